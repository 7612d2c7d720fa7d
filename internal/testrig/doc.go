// Package testrig holds the test rigs, apart from what ships: a real
// kube-apiserver + etcd (testenv), a real one-node cluster (node) and its
// images (images), the in-test STS (ststest), MinIO (miniotest) and an STS
// in front of it that forces rotations (stsfront), moto
// (moto), server-side dry-run helpers (applytest) and the simulated pod
// view (podview, only where a real node cannot reach). The operator and the
// sidecar never import them; TestShippedBinariesImportNoRig checks that.
package testrig
