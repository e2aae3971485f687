package influx

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// testCA is a certificate authority made up for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "picket test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// issue signs a certificate for a server at 127.0.0.1, or for a client.
func (ca *testCA) issue(t *testing.T, usage x509.ExtKeyUsage) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestTLS: an https URL is verified against the configured CA and presents the client
// certificate; without the CA the data stays in the spool, and nothing goes in plain
// text.
func TestTLS(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	f := newFake(t)
	var plain atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
			plain.Add(1)
		}
		f.serve(w, r)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.issue(t, x509.ExtKeyUsageServerAuth)},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.pool}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes are expected
	srv.StartTLS()
	t.Cleanup(srv.Close)

	// Not trusted: the system roots do not know the test CA.
	sp := openSpool(t, t.TempDir())
	var logs logBuffer
	o := testOptions(sp, srv.URL)
	o.Logger = logs.logger()
	o.TLS = &tls.Config{Certificates: []tls.Certificate{ca.issue(t, x509.ExtKeyUsageClientAuth)}}
	e := newExporter(t, o)
	appendAll(t, sp, batches(3, 10))
	stop := run(e)
	waitFor(t, "the failure logged", func() bool { return strings.Contains(logs.String(), "certificate") })
	stop()
	if n, _ := e.cursor.Backlog(); n != 30 || f.count() != 0 || plain.Load() != 0 {
		t.Fatalf("backlog %d, points %d, plain requests %d: want 30 kept, none sent", n, f.count(), plain.Load())
	}

	// Trusted, with the client certificate.
	o.TLS.RootCAs = ca.pool
	o.Logger = logs.logger()
	e = newExporter(t, o)
	stop = run(e)
	defer stop()
	waitFor(t, "30 points", func() bool { return f.count() == 30 })
	if plain.Load() != 0 {
		t.Errorf("%d requests without TLS or without the client certificate", plain.Load())
	}
}
