package realnodetest

import "github.com/stsbind/stsbind/internal/testrig/stsfront"

// STSFront is the rotation tests' STS in front of MinIO (stsfront.Front).
type STSFront = stsfront.Front

// Plan is what the first credentials of a planned session carry.
type Plan = stsfront.Plan

// CutoffPolicy allows everything in S3 until cutoff.
var CutoffPolicy = stsfront.CutoffPolicy

// NewSTSFront starts a front for MinIO on the node's bridge address, where
// the operator's pods reach it.
func (s *Suite) NewSTSFront() (*STSFront, error) {
	return stsfront.Start(s.Node.Network.Gateway.String(), s.MinIO.Endpoint)
}
