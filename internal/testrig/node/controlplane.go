package node

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"time"
)

// ServiceCIDR is the Services' range; its first address is the
// `kubernetes` Service, named in the API server's certificate.
const ServiceCIDR = "10.96.0.0/24"

// startControlPlane writes the certificates and kubeconfigs, then starts
// etcd, kube-apiserver (ready when /readyz answers), the controller manager
// and the scheduler.
func (n *Node) startControlPlane() error {
	pki := filepath.Join(n.Dir, "pki")
	gw := n.Network.Gateway
	var err error
	if n.apiPort, err = freePort(gw.String()); err != nil {
		return err
	}
	n.APIServerURL = fmt.Sprintf("https://%s:%d", gw, n.apiPort)
	// The issuer is on the bridge address too: an STS for pods fetches its
	// discovery document from there.
	n.IssuerURL = n.APIServerURL
	apiCert, apiKey, err := n.CA.Issue(CertRequest{
		CommonName: "kube-apiserver",
		DNSNames:   []string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "localhost"},
		IPs:        []net.IP{gw, net.ParseIP("10.96.0.1"), net.IPv4(127, 0, 0, 1)},
		Server:     true,
	})
	if err != nil {
		return err
	}
	kubeletClientCert, kubeletClientKey, err := n.CA.Issue(CertRequest{CommonName: "kube-apiserver-kubelet-client", Organization: []string{"system:masters"}, Client: true})
	if err != nil {
		return err
	}
	saKey, saPub, err := serviceAccountKey()
	if err != nil {
		return err
	}
	if err := writeFiles(pki, map[string][]byte{
		"ca.crt": n.CA.CertPEM, "apiserver.crt": apiCert, "apiserver.key": apiKey,
		"apiserver-kubelet-client.crt": kubeletClientCert, "apiserver-kubelet-client.key": kubeletClientKey,
		"sa.key": saKey, "sa.pub": saPub,
	}); err != nil {
		return err
	}
	for _, kc := range []struct{ file, user, group string }{
		{"admin.kubeconfig", "stsbind-node-admin", "system:masters"},
		{"controller-manager.kubeconfig", "system:kube-controller-manager", ""},
		{"scheduler.kubeconfig", "system:kube-scheduler", ""},
		{"kubelet.kubeconfig", "system:node:" + n.opts.NodeName, "system:nodes"},
	} {
		var groups []string
		if kc.group != "" {
			groups = []string{kc.group}
		}
		if err := n.CA.writeKubeconfig(filepath.Join(n.Dir, kc.file), n.APIServerURL, kc.user, groups...); err != nil {
			return err
		}
	}

	etcdPort, err := freePort("127.0.0.1")
	if err != nil {
		return err
	}
	peerPort, err := freePort("127.0.0.1")
	if err != nil {
		return err
	}
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", etcdPort)
	etcd, err := n.start("etcd", n.bins.etcd, []string{
		"--data-dir", filepath.Join(n.Dir, "etcd"),
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", peerPort),
		"--initial-advertise-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", peerPort),
		"--initial-cluster", fmt.Sprintf("default=http://127.0.0.1:%d", peerPort),
		"--unsafe-no-fsync=true", "--quota-backend-bytes", "1073741824",
	}, nil)
	if err != nil {
		return err
	}
	f := func(name string) string { return filepath.Join(pki, name) }
	api, err := n.start("kube-apiserver", n.bins.apiserver, []string{
		"--etcd-servers", etcdURL,
		"--bind-address", gw.String(), "--advertise-address", gw.String(), "--secure-port", strconv.Itoa(n.apiPort),
		"--tls-cert-file", f("apiserver.crt"), "--tls-private-key-file", f("apiserver.key"),
		"--client-ca-file", f("ca.crt"),
		"--service-account-issuer", n.IssuerURL, "--service-account-jwks-uri", n.IssuerURL + "/openid/v1/jwks",
		"--service-account-key-file", f("sa.pub"), "--service-account-signing-key-file", f("sa.key"),
		"--service-cluster-ip-range", ServiceCIDR,
		"--authorization-mode", "Node,RBAC",
		// The default set runs (ServiceAccount among them), plus the node's own.
		"--enable-admission-plugins", "NodeRestriction",
		"--allow-privileged=true",
		"--kubelet-preferred-address-types", "InternalIP",
		"--kubelet-client-certificate", f("apiserver-kubelet-client.crt"), "--kubelet-client-key", f("apiserver-kubelet-client.key"),
		"--kubelet-certificate-authority", f("ca.crt"),
		"--cert-dir", filepath.Join(n.Dir, "apiserver"),
		"--profiling=false",
	}, nil)
	if err != nil {
		return err
	}
	if err := n.waitAPIServer(api, etcd); err != nil {
		return err
	}
	if _, err := n.start("kube-controller-manager", n.bins.controllerManager, []string{
		"--kubeconfig", filepath.Join(n.Dir, "controller-manager.kubeconfig"),
		"--service-account-private-key-file", f("sa.key"),
		"--root-ca-file", f("ca.crt"),
		"--use-service-account-credentials=true",
		"--service-cluster-ip-range", ServiceCIDR,
		"--leader-elect=false", "--secure-port=0",
	}, nil); err != nil {
		return err
	}
	_, err = n.start("kube-scheduler", n.bins.scheduler, []string{
		"--kubeconfig", filepath.Join(n.Dir, "scheduler.kubeconfig"),
		"--leader-elect=false", "--secure-port=0",
	}, nil)
	return err
}

// waitAPIServer polls /readyz with the admin's client certificate.
func (n *Node) waitAPIServer(api, etcd *proc) error {
	cert, key, err := n.CA.Issue(CertRequest{CommonName: "stsbind-node-probe", Organization: []string{"system:masters"}, Client: true})
	if err != nil {
		return err
	}
	pair, err := tls.X509KeyPair(cert, key)
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	roots.AddCert(n.CA.Cert)
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12},
	}}
	return poll("kube-apiserver ready at "+n.APIServerURL, 90*time.Second, 200*time.Millisecond, func() (bool, error) {
		for _, p := range []*proc{etcd, api} {
			if err := p.exitedError(); err != nil {
				return false, err
			}
		}
		resp, err := c.Get(n.APIServerURL + "/readyz")
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, fmt.Errorf("/readyz: %s", resp.Status)
	})
}

// freePort returns a TCP port on host that was free a moment ago.
func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
