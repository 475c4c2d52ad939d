package main

import (
	"bytes"
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/relaykit/relay/balance"
	"github.com/relaykit/relay/listener"
)

// The status page at / of the metrics address: what the proxy is doing
// now, for a person with a browser. It is rendered on the server from a
// statusPage (html/template escapes every value), refreshes itself and
// needs neither JavaScript nor anything from elsewhere.

//go:embed status.html
var statusHTML string

var statusTmpl = template.Must(template.New("status").Funcs(template.FuncMap{
	"bytes": humanBytes,
}).Parse(statusHTML))

// maxLiveRows caps the live sessions listed; the page says how many more
// there are.
const maxLiveRows = 200

// statusRefresh is how often the page reloads itself, in seconds (the
// template's meta refresh says the same).
const statusRefresh = 5

// statusPage is everything the page shows: a plain value, built from a
// ProxyListener and a Set by newStatusPage, or by hand in tests.
type statusPage struct {
	Now     time.Time
	Uptime  time.Duration // since the metrics server started
	Listen  string        // the proxy's listening address
	Policy  string        // the balance policy
	Refresh int           // seconds

	// Totals from listener.Stats and the Set.
	Sessions                       uint64
	Active                         int64
	NoServer, UpstreamFailures     uint64
	BytesToUpstream, BytesToClient uint64
	// ServersUp and ServersTotal count every set's servers: -upstream's
	// and the routes'.
	ServersUp, ServersTotal int

	// Servers as Set.Servers lists them: live ones by address, then
	// those draining.
	Servers []balance.ServerStats
	// Routes are the -route sets' servers, one table each.
	Routes []routeServers
	// Refused counts clients refused before an upstream, by reason
	// (listener.Stats.Refused); PeekFailures bad ClientHellos.
	Denied, PerIPLimit, NoRoute, PeekFailures uint64

	// Live holds the oldest live sessions, at most maxLiveRows; More
	// counts the newer ones left out.
	Live []liveSession
	More int
}

// countServers adds servers to the summary's counts.
func (p *statusPage) countServers(servers []balance.ServerStats) {
	p.ServersTotal += len(servers)
	for _, s := range servers {
		if s.State == balance.StateUp {
			p.ServersUp++
		}
	}
}

// routeServers is one route's servers.
type routeServers struct {
	Name    string
	Servers []balance.ServerStats
}

// liveSession is one row of the live sessions' table.
type liveSession struct {
	ID                   uint64
	Client, Server       string // Server is empty until an upstream was had
	Phase                string
	Age                  time.Duration
	ToUpstream, ToClient int64
}

// newStatusPage builds the page's data from snapshots taken now.
func newStatusPage(pl *listener.ProxyListener, set *balance.Set, started, now time.Time) *statusPage {
	st := pl.Stats()
	p := &statusPage{
		Now:              now,
		Uptime:           now.Sub(started).Round(time.Second),
		Listen:           pl.Addr().String(),
		Refresh:          statusRefresh,
		Sessions:         st.Sessions,
		Active:           st.Active,
		UpstreamFailures: st.UpstreamFailures,
		BytesToUpstream:  st.BytesToUpstream,
		BytesToClient:    st.BytesToClient,
		Denied:           st.Refused[listener.RefusedDenied],
		PerIPLimit:       st.Refused[listener.RefusedPerIP],
		NoRoute:          st.Refused[listener.RefusedNoRoute],
		PeekFailures:     st.PeekFailures,
	}
	if set != nil {
		p.Policy = set.Balance().String()
		p.NoServer = set.NoServer()
		p.Servers = set.Servers()
		p.countServers(p.Servers)
	}
	p.setLive(pl.Sessions(), now)
	return p
}

// setLive fills Live and More from sessions, oldest first.
func (p *statusPage) setLive(sessions []listener.SessionState, now time.Time) {
	if len(sessions) > maxLiveRows {
		p.More = len(sessions) - maxLiveRows
		sessions = sessions[:maxLiveRows]
	}
	p.Live = make([]liveSession, len(sessions))
	for i, s := range sessions {
		p.Live[i] = liveSession{
			ID:         s.ID,
			Client:     addrString(s.ClientAddr),
			Server:     addrString(s.UpstreamAddr),
			Phase:      s.Phase.String(),
			Age:        max(now.Sub(s.Start), 0).Round(time.Second),
			ToUpstream: s.BytesToUpstream,
			ToClient:   s.BytesToClient,
		}
	}
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// render writes the page as HTML.
func (p *statusPage) render(w io.Writer) error {
	return statusTmpl.Execute(w, p)
}

// humanBytes is n in B, KiB, MiB... with three significant digits at most.
func humanBytes(n any) string {
	var v float64
	switch n := n.(type) {
	case int64:
		v = float64(n)
	case uint64:
		v = float64(n)
	case int:
		v = float64(n)
	default:
		return fmt.Sprint(n)
	}
	if v < 1024 {
		return fmt.Sprintf("%.0f B", v)
	}
	for _, unit := range []string{"KiB", "MiB", "GiB", "TiB"} {
		v /= 1024
		if v < 1024 || unit == "TiB" {
			if v < 10 {
				return fmt.Sprintf("%.1f %s", v, unit)
			}
			return fmt.Sprintf("%.0f %s", v, unit)
		}
	}
	return ""
}

// newStatusHandler serves the page, rendered afresh on every request:
// the default set's servers (-upstream) at the top, then each route's.
func newStatusHandler(pl *listener.ProxyListener, sets []namedSet, started time.Time) http.Handler {
	var def *balance.Set
	var routes []namedSet
	for _, ns := range sets {
		if ns.name == defaultRoute {
			def = ns.set
		} else {
			routes = append(routes, ns)
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var buf bytes.Buffer
		p := newStatusPage(pl, def, started, time.Now())
		for _, ns := range routes {
			rs := routeServers{Name: ns.name, Servers: ns.set.Servers()}
			p.Routes = append(p.Routes, rs)
			p.countServers(rs.Servers)
			p.NoServer += ns.set.NoServer()
			if p.Policy == "" {
				p.Policy = ns.set.Balance().String()
			}
		}
		if err := p.render(&buf); err != nil {
			http.Error(w, "status: "+err.Error(), http.StatusInternalServerError)
			return
		}
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		// Nothing but the inline style block: no script, no fetch.
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
		w.Write(buf.Bytes())
	})
}
