package adminapi

import (
	"fmt"
	"html/template"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/pinhole-sip/pinhole/internal/diagnostics"
	"github.com/pinhole-sip/pinhole/registrar"
)

// The status page: server-rendered HTML, inline CSS and SVG, no script,
// no external asset, so it works air-gapped. It refreshes itself with a
// meta refresh. The AOR search is a plain GET form answered on the server
// with the same code as GET /api/v1/registrations.

// RefreshSeconds is the page's meta refresh period.
const RefreshSeconds = 5

type kv struct {
	K string
	V string
}

type pageData struct {
	Status      Status
	Refresh     int
	Uptime      string
	NotReady    []kv
	Registrar   bool
	Edge        bool
	BindSpark   template.HTML
	AORSpark    template.HTML
	FlowSpark   template.HTML
	ByTransport []kv
	ByUA        []kv
	Top         []registrar.AORCount
	Walk        string
	AuthRates   []kv
	KeepaliveS  string
	Flows       []kv
	Query       string
	Search      *RegistrationsJSON
	SearchErr   string
	Diag        bool
	Findings    []diagnostics.Finding
}

var authOrder = []string{"ok", "challenged", "stale", "wrong_password", "unknown_user", "replay", "banned", "forbidden_aor", "malformed"}

func (a *API) page(w http.ResponseWriter, r *http.Request) {
	st := a.Status(r.Context())
	samples, bd := a.hist.snapshot()
	d := pageData{
		Status: st, Refresh: RefreshSeconds, Uptime: (time.Duration(st.UptimeSeconds) * time.Second).String(),
		Registrar: a.o.Registrar != nil, Edge: a.o.Edge != nil, Top: bd.top,
	}
	for k, v := range st.NotReady {
		d.NotReady = append(d.NotReady, kv{k, v})
	}
	sort.Slice(d.NotReady, func(i, j int) bool { return d.NotReady[i].K < d.NotReady[j].K })
	d.BindSpark = sparkline(samples, func(s sample) float64 { return float64(s.bindings) })
	d.AORSpark = sparkline(samples, func(s sample) float64 { return float64(s.aors) })
	d.FlowSpark = sparkline(samples, func(s sample) float64 { return float64(s.flows) })
	d.ByTransport = sortedKV(bd.byTransport)
	d.ByUA = sortedKV(bd.byUA)
	if !bd.at.IsZero() {
		d.Walk = fmt.Sprintf("from %d AORs at %s", bd.walked, bd.at.UTC().Format(time.RFC3339))
		if bd.detailed < bd.walked {
			d.Walk += fmt.Sprintf("; transports and User-Agents from the first %d", bd.detailed)
		}
		if bd.partial {
			d.Walk += " (partial)"
		}
	}
	if n := len(samples); n >= 2 {
		prev, last := samples[n-2], samples[n-1]
		if dt := last.t.Sub(prev.t).Seconds(); dt > 0 {
			for _, o := range authOrder {
				if _, ok := last.auth[o]; ok {
					d.AuthRates = append(d.AuthRates, kv{o, fmt.Sprintf("%.1f", (last.auth[o]-prev.auth[o])*60/dt)})
				}
			}
			d.KeepaliveS = fmt.Sprintf("%.2f", (last.keepalives-prev.keepalives)/dt)
		}
	}
	flows := map[string]int{}
	for t, n := range st.Counts.Flows {
		flows[t] = n
	}
	for t, n := range flows {
		d.Flows = append(d.Flows, kv{t, fmt.Sprint(n)})
	}
	sort.Slice(d.Flows, func(i, j int) bool { return d.Flows[i].K < d.Flows[j].K })
	if a.o.Diagnostics != nil {
		d.Diag = true
		d.Findings, _ = a.findings("", "")
		if len(d.Findings) > 50 {
			d.Findings = d.Findings[:50]
		}
	}
	if q := strings.TrimSpace(r.URL.Query().Get("aor")); q != "" && a.o.Registrar != nil {
		d.Query = q
		res, err := a.Registrations(r.Context(), q)
		if err != nil {
			d.SearchErr = err.Error()
		} else {
			d.Search = &res
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if err := pageTmpl.Execute(w, d); err != nil {
		a.o.Logger.Warn("status page render", "error", err)
	}
}

func sortedKV(m map[string]int) []kv {
	out := make([]kv, 0, len(m))
	for k, v := range m {
		out = append(out, kv{k, fmt.Sprint(v)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].K < out[j].K })
	return out
}

// sparkline renders the last hour of one series as a small inline SVG.
func sparkline(ss []sample, val func(sample) float64) template.HTML {
	const w, h = 240.0, 40.0
	if len(ss) < 2 {
		return template.HTML(`<svg class="spark" width="240" height="40"></svg>`)
	}
	lo, hi := val(ss[0]), val(ss[0])
	for _, s := range ss {
		lo, hi = min(lo, val(s)), max(hi, val(s))
	}
	span := hi - lo
	if span == 0 {
		span = 1
	}
	var pts strings.Builder
	for i, s := range ss {
		x := w * float64(i) / float64(len(ss)-1)
		y := h - 2 - (h-4)*(val(s)-lo)/span
		fmt.Fprintf(&pts, "%.1f,%.1f ", x, y)
	}
	// Numbers only: safe to mark as HTML.
	return template.HTML(fmt.Sprintf(`<svg class="spark" width="240" height="40" viewBox="0 0 240 40"><polyline fill="none" stroke="#2b6cb0" stroke-width="1.5" points="%s"/></svg>`,
		strings.TrimSpace(pts.String())))
}

var pageTmpl = template.Must(template.New("page").Funcs(template.FuncMap{
	"deref": func(p *int64) string {
		if p == nil {
			return "n/a"
		}
		return fmt.Sprint(*p)
	},
	"authOff": func(p *bool) bool { return p != nil && !*p },
	"lastEvidence": func(es []diagnostics.Evidence) string {
		if len(es) == 0 {
			return ""
		}
		return es[len(es)-1].Text
	},
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{{.Refresh}}">
<title>Pinhole status</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1a202c;background:#f7fafc}
h1{font-size:1.4em;margin:0 0 .3em} h2{font-size:1.15em;margin:1.2em 0 .4em;border-bottom:1px solid #cbd5e0}
h3{font-size:1em;margin:.8em 0 .3em}
.grid{display:flex;flex-wrap:wrap;gap:1.5em} .card{background:#fff;border:1px solid #e2e8f0;border-radius:6px;padding:.7em 1em;min-width:14em}
table{border-collapse:collapse} td,th{padding:.15em .6em;text-align:left;border-bottom:1px solid #edf2f7}
.num{font-size:1.6em;font-weight:600} .ok{color:#276749} .bad{color:#c53030} .muted{color:#718096;font-size:.9em}
code{font-size:.95em}
</style></head><body>
<h1>Pinhole {{.Status.Version}}</h1>
<p>roles: <b id="roles">{{range $i, $r := .Status.Roles}}{{if $i}}, {{end}}{{$r}}{{end}}</b> · up {{.Uptime}} ·
{{if .Status.Ready}}<span id="ready" class="ok">ready</span>{{else}}<span id="ready" class="bad">not ready</span>{{end}}</p>
{{if .NotReady}}<ul class="bad">{{range .NotReady}}<li>{{.K}}: {{.V}}</li>{{end}}</ul>{{end}}
{{if .Registrar}}
<h2>Registrar</h2>
<div class="grid">
<div class="card"><div class="muted">bindings</div><div class="num" id="count-bindings">{{deref .Status.Counts.Bindings}}</div>{{.BindSpark}}</div>
<div class="card"><div class="muted">AORs</div><div class="num" id="count-aors">{{deref .Status.Counts.AORs}}</div>{{.AORSpark}}</div>
<div class="card"><div class="muted">store</div>{{with .Status.Store}}{{if .OK}}<div class="num ok" id="store">ok</div>{{else}}<div class="num bad" id="store">down</div><div class="bad">{{.Error}}</div>{{end}}{{end}}
<h3>PBX targets</h3>{{if .Status.PBX}}<table>{{range .Status.PBX}}<tr><td><code>{{.URI}}</code></td><td>{{if .Up}}<span class="ok">up</span>{{else}}<span class="bad">down</span>{{end}}</td></tr>{{end}}</table>{{else}}<span class="muted">none configured</span>{{end}}</div>
</div>
<div class="grid">
<div class="card"><h3>Bindings by transport</h3><table id="by-transport">{{range .ByTransport}}<tr><td>{{.K}}</td><td>{{.V}}</td></tr>{{else}}<tr><td class="muted">none</td></tr>{{end}}</table>
<h3>Bindings by User-Agent</h3><table id="by-ua">{{range .ByUA}}<tr><td>{{.K}}</td><td>{{.V}}</td></tr>{{else}}<tr><td class="muted">none</td></tr>{{end}}</table>
<p class="muted">{{.Walk}}</p></div>
<div class="card"><h3>Auth outcomes per minute</h3>{{if authOff .Status.Auth}}<p class="muted">authentication is off</p>{{end}}<table id="auth">{{range .AuthRates}}<tr><td>{{.K}}</td><td>{{.V}}</td></tr>{{else}}<tr><td class="muted">no data yet</td></tr>{{end}}</table></div>
<div class="card"><h3>Top AORs by bindings</h3><table id="top">{{range .Top}}<tr><td><a href="?aor={{.AOR}}"><code>{{.AOR}}</code></a></td><td>{{.Bindings}}</td></tr>{{else}}<tr><td class="muted">none</td></tr>{{end}}</table></div>
</div>
<h3>Find an AOR</h3>
<form method="get" action="/"><input name="aor" size="40" placeholder="sip:alice@example.com" value="{{.Query}}"> <button>show</button></form>
{{if .SearchErr}}<p class="bad">{{.SearchErr}}</p>{{end}}
{{with .Search}}<p><b id="search-aor">{{.AOR}}</b>: <span id="search-count">{{len .Bindings}}</span> binding(s)</p>
{{if .Bindings}}<table id="search"><tr><th>contact</th><th>expires in</th><th>source</th><th>flow</th><th>User-Agent</th><th>instance / reg-id</th></tr>
{{range .Bindings}}<tr><td><code>{{.Contact}}</code></td><td>{{.ExpiresIn}} s</td><td>{{.Source.Transport}} {{.Source.Address}}</td>
<td>{{with .Flow}}#{{.ID}} {{.Transport}} {{.Remote}}{{else}}{{if .FlowToken}}<span class="muted">token</span>{{end}}{{end}}</td>
<td>{{.UserAgent}}</td><td>{{.Instance}}{{if .RegID}} / {{.RegID}}{{end}}</td></tr>{{end}}</table>{{end}}{{end}}
{{end}}
{{if .Edge}}
<h2>Edge</h2>
<div class="grid">
<div class="card"><div class="muted">flows</div>{{.FlowSpark}}<table id="flows">{{range .Flows}}<tr><td>{{.K}}</td><td id="flows-{{.K}}">{{.V}}</td></tr>{{else}}<tr><td class="muted">none</td></tr>{{end}}</table></div>
<div class="card"><div class="muted">keep-alives per second</div><div class="num" id="keepalives">{{if .KeepaliveS}}{{.KeepaliveS}}{{else}}n/a{{end}}</div></div>
<div class="card"><h3>Registrar targets</h3><table>{{range .Status.Registrars}}<tr><td><code>{{.URI}}</code></td><td>{{if .Up}}<span class="ok">up</span>{{else}}<span class="bad">down</span>{{end}}</td></tr>{{end}}</table></div>
</div>
{{end}}
{{if .Diag}}
<h2>Diagnostics</h2>
<p class="muted">registration fingerprints this node sees now (first 50; all at <a href="/api/v1/diagnostics">/api/v1/diagnostics</a>)</p>
<table id="findings"><tr><th>fingerprint</th><th>AOR</th><th>device</th><th>count</th><th>last evidence</th><th>fix</th></tr>
{{range .Findings}}<tr><td><b>{{.Fingerprint}}</b></td><td><code>{{.AOR}}</code></td><td><code>{{.Device}}</code></td><td>{{.Count}}</td>
<td>{{lastEvidence .Evidence}}</td><td class="muted">{{.Fix}}</td></tr>
{{else}}<tr><td colspan="6" class="muted">no findings</td></tr>{{end}}</table>
{{end}}
<p class="muted">refreshes every {{.Refresh}} s · JSON at <a href="/api/v1/status">/api/v1/status</a></p>
</body></html>
`))
