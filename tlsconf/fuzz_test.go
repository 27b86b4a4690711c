package tlsconf

import (
	"crypto"
	"crypto/tls"
	"testing"
	"time"
)

// FuzzParsePair feeds arbitrary certificate and key files to the loader: it
// must never panic, and whatever it accepts must be a usable pair.
func FuzzParsePair(f *testing.F) {
	now := time.Now()
	ecCert, ecKey, err := SelfSigned{Hosts: []string{"a.test", "127.0.0.1"}}.Generate()
	if err != nil {
		f.Fatal(err)
	}
	rsaCert, rsaKey, err := SelfSigned{Hosts: []string{"*.b.test"}, Key: KeyRSA2048}.Generate()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(ecCert, ecKey)
	f.Add(rsaCert, rsaKey)
	f.Add(ecCert, rsaKey)
	f.Add(append(append([]byte{}, ecCert...), ecKey...), append(append([]byte{}, ecKey...), ecCert...))
	f.Add([]byte("garbage"), []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"), []byte{})
	f.Add([]byte{}, []byte("-----BEGIN EC PRIVATE KEY-----\nMAA=\n-----END EC PRIVATE KEY-----\n"))

	f.Fuzz(func(t *testing.T, certPEM, keyPEM []byte) {
		c, err := parsePair(certPEM, keyPEM, Pair{CertFile: "c.pem", KeyFile: "k.pem"}, now)
		if err != nil {
			if c != nil {
				t.Fatal("certificate returned with an error")
			}
			return
		}
		if c.Leaf == nil || len(c.Certificate) == 0 || string(c.Leaf.Raw) != string(c.Certificate[0]) {
			t.Fatal("accepted pair without a matching parsed leaf")
		}
		signer, ok := c.PrivateKey.(crypto.Signer)
		if !ok {
			t.Fatalf("private key %T is not a crypto.Signer", c.PrivateKey)
		}
		pub, ok := c.Leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
		if !ok || !pub.Equal(signer.Public()) {
			t.Fatal("accepted a certificate that does not match its key")
		}
		if now.After(c.Leaf.NotAfter) || now.Before(c.Leaf.NotBefore) {
			t.Fatal("accepted a certificate outside its validity")
		}
		snap := &snapshot{def: c}
		if snap.pick(&tls.ClientHelloInfo{ServerName: "x"}) != c {
			t.Fatal("default not selected")
		}
	})
}
