# stsbind: `make demo` runs the product locally, `make test` runs every test.

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

LOCALBIN ?= $(CURDIR)/bin
CONTROLLER_GEN ?= $(LOCALBIN)/controller-gen
CONTROLLER_TOOLS_VERSION ?= v0.23.0
HELM ?= $(LOCALBIN)/helm
HELM_VERSION ?= v4.3.1
KUSTOMIZE ?= $(LOCALBIN)/kustomize
KUSTOMIZE_VERSION ?= v5.8.2

# The manager image (make docker-build).
IMG ?= ghcr.io/stsbind/stsbind:0.1.0
CONTAINER_TOOL ?= docker

GO_TEST_FLAGS ?= -count=1 -timeout 25m

.PHONY: all
all: build

##@ General

.PHONY: help
help: ## Show the targets.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  %-18s %s\n", $$1, $$2 } /^##@/ { printf "\n%s\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: controller-gen ## Generate the CRD, RBAC and webhook configuration from the markers.
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd webhook paths="./..." output:crd:artifacts:config=config/crd/bases
	@# The chart ships the same CRDs and the generated RBAC rules.
	rm -f charts/stsbind/crds/*.yaml && cp config/crd/bases/*.yaml charts/stsbind/crds/
	cp config/rbac/role.yaml charts/stsbind/files/role.yaml

.PHONY: generate
generate: controller-gen ## Generate deepcopy code from the markers.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./..."

.PHONY: fmt
fmt: ## Run go fmt.
	go fmt ./...

.PHONY: vet
vet: ## Run go vet.
	go vet ./...

.PHONY: verify-generated
verify-generated: manifests generate ## In CI, fail when the markers generate something other than what is committed.
	@if [[ "$${CI:-}" == "true" ]] && git rev-parse --git-dir >/dev/null 2>&1; then \
	  if ! git diff --exit-code -- config api charts/stsbind/crds charts/stsbind/files; then \
	    echo "generated files differ from the markers: run 'make manifests generate' and commit" >&2; exit 1; \
	  fi; \
	fi

.PHONY: envtest
envtest: ## Build or reuse the kube-apiserver, etcd and kubectl binaries for envtest (cached in the user cache dir).
	@hack/envtest-assets.sh >/dev/null

.PHONY: check-assets
check-assets: ## Resolve the module graphs and package lists of everything hack/ builds (no compile; CI runs it every time).
	hack/envtest-assets.sh --check
	hack/node-assets.sh --check
	hack/minio.sh --check

.PHONY: minio
minio: ## Build or reuse the MinIO server used as STS and S3 by the e2e tests and the demo (cached in the user cache dir).
	@hack/minio.sh >/dev/null

.PHONY: test
test: verify-generated fmt vet lint-dockerfile helm kustomize js-client ## Run every test: unit, envtest (real kube-apiserver + etcd), e2e (MinIO, moto, the client matrix of seven AWS clients), a real node (kubelet + containerd), Helm chart and kustomize.
	KUBEBUILDER_ASSETS="$$(hack/envtest-assets.sh)" STSBIND_NODE_ASSETS="$$(hack/node-assets.sh)" STSBIND_MINIO="$$(hack/minio.sh)" go test $(GO_TEST_FLAGS) ./...

JS_CLIENT := e2e/clients/js
.PHONY: js-client
js-client: $(JS_CLIENT)/node_modules/.package-lock.json ## Install the client matrix's AWS SDK for JavaScript from its lockfile (npm ci).
$(JS_CLIENT)/node_modules/.package-lock.json: $(JS_CLIENT)/package.json $(JS_CLIENT)/package-lock.json
	cd $(JS_CLIENT) && npm ci --no-audit --no-fund --no-update-notifier --loglevel=error

.PHONY: demo
demo: manifests ## Run the product on a real one-node cluster here (chart, provider, binding, a real pod listing a bucket); envtest where no node can run. Ctrl-C stops.
	@# A built binary, not go run: go run exits 1 after Ctrl-C even when the demo stopped cleanly.
	go build -o $(LOCALBIN)/demo ./hack/demo
	$(LOCALBIN)/demo

.PHONY: bench
bench: ## Run the benchmarks (webhook: instructions per review by callgrind and ns/op; webhook over HTTPS; controller at 1,000 and 10,000 bindings; minutes) and print one table against DESIGN.md's targets, also written to hack/bench/table.txt.
	hack/bench/run.sh

##@ Build

.PHONY: docker-build
docker-build: ## Build the manager image IMG with CONTAINER_TOOL (docker, podman).
	$(CONTAINER_TOOL) build -t $(IMG) .

.PHONY: docker-push
docker-push: ## Push the manager image IMG.
	$(CONTAINER_TOOL) push $(IMG)

.PHONY: lint-dockerfile
lint-dockerfile: ## Check the Dockerfile with BuildKit's rules (docker build --check), no engine needed.
	cd hack/dockerfile-lint && go run . ../../Dockerfile

.PHONY: build
build: manifests generate fmt vet ## Build the manager binary into bin/.
	go build -trimpath -o $(LOCALBIN)/stsbind .

.PHONY: run
run: manifests generate fmt vet ## Run the controller against the cluster in ~/.kube/config.
	go run . --leader-elect=false --metrics-bind-address=0 --webhook-cert-mode=disabled

##@ Tools

.PHONY: controller-gen
controller-gen: $(CONTROLLER_GEN)
$(CONTROLLER_GEN):
	@mkdir -p $(LOCALBIN)
	GOBIN=$(LOCALBIN) go install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_TOOLS_VERSION)

.PHONY: helm
helm: $(HELM) ## Install helm into bin/.
$(HELM): $(LOCALBIN)/helm-$(HELM_VERSION)
	ln -sf helm-$(HELM_VERSION) $(HELM)
$(LOCALBIN)/helm-$(HELM_VERSION):
	@mkdir -p $(LOCALBIN)
	@# go install leaves the version at the minor; say the exact one.
	GOBIN=$(LOCALBIN)/.helm-$(HELM_VERSION) go install -ldflags "-X helm.sh/helm/v4/internal/version.version=$(HELM_VERSION)" helm.sh/helm/v4/cmd/helm@$(HELM_VERSION)
	mv $(LOCALBIN)/.helm-$(HELM_VERSION)/helm $@ && rmdir $(LOCALBIN)/.helm-$(HELM_VERSION)

.PHONY: kustomize
kustomize: $(KUSTOMIZE) ## Install kustomize into bin/.
$(KUSTOMIZE): $(LOCALBIN)/kustomize-$(KUSTOMIZE_VERSION)
	ln -sf kustomize-$(KUSTOMIZE_VERSION) $(KUSTOMIZE)
$(LOCALBIN)/kustomize-$(KUSTOMIZE_VERSION):
	@mkdir -p $(LOCALBIN)
	GOBIN=$(LOCALBIN)/.kustomize-$(KUSTOMIZE_VERSION) go install sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION)
	mv $(LOCALBIN)/.kustomize-$(KUSTOMIZE_VERSION)/kustomize $@ && rmdir $(LOCALBIN)/.kustomize-$(KUSTOMIZE_VERSION)
