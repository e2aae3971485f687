package influx

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/picket-agent/picket/exporters/tlstest"
)

// TestTLS: an https URL is verified against the configured CA and presents the client
// certificate; without the CA the data stays in the spool, and nothing goes in plain
// text.
func TestTLS(t *testing.T) {
	t.Parallel()
	ca := tlstest.NewCA(t)
	f := newFake(t)
	var plain atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
			plain.Add(1)
		}
		f.serve(w, r)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, "127.0.0.1", x509.ExtKeyUsageServerAuth)},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes are expected
	srv.StartTLS()
	t.Cleanup(srv.Close)

	// Not trusted: the system roots do not know the test CA.
	sp := openSpool(t, t.TempDir())
	var logs logBuffer
	o := testOptions(sp, srv.URL)
	o.Logger = logs.logger()
	o.TLS = &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, "picket", x509.ExtKeyUsageClientAuth)}}
	e := newExporter(t, o)
	appendAll(t, sp, batches(3, 10))
	stop := run(e)
	waitFor(t, "the failure logged", func() bool { return strings.Contains(logs.String(), "certificate") })
	stop()
	if n, _ := e.cursor.Backlog(); n != 30 || f.count() != 0 || plain.Load() != 0 {
		t.Fatalf("backlog %d, points %d, plain requests %d: want 30 kept, none sent", n, f.count(), plain.Load())
	}

	// Trusted, with the client certificate.
	o.TLS.RootCAs = ca.Pool
	o.Logger = logs.logger()
	e = newExporter(t, o)
	stop = run(e)
	defer stop()
	waitFor(t, "30 points", func() bool { return f.count() == 30 })
	if plain.Load() != 0 {
		t.Errorf("%d requests without TLS or without the client certificate", plain.Load())
	}
}
