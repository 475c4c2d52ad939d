package main

import (
	"crypto/tls"

	"github.com/relaykit/relay/internal/selfsigned"
)

// tlsServerName is the DNS name in the generated certificate (it also
// carries the IP 127.0.0.1).
const tlsServerName = "localhost"

// generateCert makes a throwaway self-signed ECDSA P-256 certificate for
// localhost and 127.0.0.1. It returns the key pair and the certificate as
// PEM, which is also the CA file for proxies to trust.
func generateCert() (tls.Certificate, []byte, error) {
	c, err := selfsigned.New("relay bench", tlsServerName, "127.0.0.1")
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	return c.TLS, c.CertPEM, nil
}
