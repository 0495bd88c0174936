package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pinhole-sip/pinhole/internal/adminapi"
	"github.com/pinhole-sip/pinhole/internal/diagnostics"
	"github.com/pinhole-sip/pinhole/registrar"
)

const ctlUsage = `usage: pinhole ctl [-ops URL | -config FILE] [-token-file FILE] [-o table|json] COMMAND
commands:
  registrations show AOR
  registrations list [-limit N] [-cursor C]
  registrations rm AOR [-instance I [-reg-id N] | -contact URI]
  flows list [-aor A] [-transport T] [-remote IP[:port]] [-limit N]
  flows close ID
  bans list
  bans rm IP [-user U]
  explain FILE|- [-source udp:1.2.3.4:5060]
  diagnostics [-aor A] [-fingerprint F]
  status`

// ctlClient talks to the admin API of one pinhole.
type ctlClient struct {
	base   string
	token  string
	json   bool
	out    io.Writer
	client *http.Client
}

// apiError is an error answer of the API.
type apiError struct {
	code int
	msg  string
}

func (e *apiError) Error() string { return fmt.Sprintf("%s (HTTP %d)", e.msg, e.code) }

// ctl is `pinhole ctl`: a client for the admin API on the ops listener.
func ctl(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("pinhole ctl", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	opsURL := fs.String("ops", "", "ops listener URL (default: from -config, else http://127.0.0.1:9060)")
	cfgPath := fs.String("config", "", "pinhole configuration file to take ops.listen and ops.admin_token_file from")
	tokenFile := fs.String("token-file", "", "file holding the admin bearer token")
	output := fs.String("o", "table", "output: table or json")
	instance := fs.String("instance", "", "registrations rm: the +sip.instance")
	regID := fs.Int64("reg-id", 0, "registrations rm: the reg-id (with -instance)")
	contact := fs.String("contact", "", "registrations rm: the Contact URI")
	user := fs.String("user", "", "bans rm: also reset this user's failures")
	source := fs.String("source", "", "explain: transport:ip:port the REGISTER came from (default "+adminapi.DefaultExplainSource+")")
	aor := fs.String("aor", "", "flows list: flows bound to this AOR")
	transport := fs.String("transport", "", "flows list: flows of this transport")
	remote := fs.String("remote", "", "flows list: flows from this IP[:port]")
	limit := fs.Int("limit", 0, "list: at most this many entries")
	cursor := fs.String("cursor", "", "registrations list: start after this AOR")
	fingerprint := fs.String("fingerprint", "", "diagnostics: only this fingerprint")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		fmt.Fprintf(stderr, "pinhole ctl: %v\n%s\n", err, ctlUsage)
		return 2
	}
	if *output != "table" && *output != "json" {
		fmt.Fprintf(stderr, "pinhole ctl: -o must be table or json\n")
		return 2
	}
	c := &ctlClient{json: *output == "json", out: stdout, client: &http.Client{Timeout: 10 * time.Second}}
	if err := c.configure(*opsURL, *cfgPath, *tokenFile); err != nil {
		fmt.Fprintln(stderr, "pinhole ctl:", err)
		return 1
	}
	cmd := strings.Join(pos[:min(len(pos), 2)], " ")
	arg := func(i int) string {
		if i < len(pos) {
			return pos[i]
		}
		return ""
	}
	need := func(n int) bool {
		if len(pos) != n {
			fmt.Fprintf(stderr, "pinhole ctl: wrong number of arguments for %q\n%s\n", cmd, ctlUsage)
			return false
		}
		return true
	}
	switch {
	case cmd == "registrations show" && need(3):
		err = c.showRegistrations(arg(2))
	case cmd == "registrations list" && need(2):
		err = c.listRegistrations(*cursor, *limit)
	case cmd == "registrations rm" && need(3):
		err = c.removeRegistrations(arg(2), *instance, *regID, *contact)
	case cmd == "flows list" && need(2):
		err = c.listFlows(*aor, *transport, *remote, *limit)
	case cmd == "flows close" && need(3):
		err = c.closeFlow(arg(2))
	case cmd == "bans list" && need(2):
		err = c.listBans()
	case cmd == "bans rm" && need(3):
		err = c.removeBan(arg(2), *user)
	case len(pos) > 0 && pos[0] == "explain" && need(2):
		err = c.explain(arg(1), *source, stdin)
	case len(pos) > 0 && pos[0] == "diagnostics" && need(1):
		err = c.diagnostics(*aor, *fingerprint)
	case len(pos) > 0 && pos[0] == "status" && need(1):
		err = c.status()
	default:
		if len(pos) > 0 && (pos[0] == "registrations" || pos[0] == "flows" || pos[0] == "bans" ||
			pos[0] == "explain" || pos[0] == "status" || pos[0] == "diagnostics") &&
			(len(pos) > 1 || pos[0] == "status" || pos[0] == "explain" || pos[0] == "diagnostics") {
			return 2 // need() already explained
		}
		fmt.Fprintln(stderr, ctlUsage)
		return 2
	}
	if err != nil {
		fmt.Fprintln(stderr, "pinhole ctl:", err)
		return 1
	}
	return 0
}

// parseInterspersed parses flags anywhere among the arguments.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// configure picks the API address and token: flags first, then the
// configuration file, then the default ops address.
func (c *ctlClient) configure(opsURL, cfgPath, tokenFile string) error {
	if cfgPath != "" {
		cfg, err := loadConfig(cfgPath)
		if err != nil {
			return err
		}
		if opsURL == "" {
			opsURL = cfg.Ops.Listen
		}
		if tokenFile == "" {
			tokenFile = cfg.Ops.AdminTokenFile
		}
	}
	if opsURL == "" {
		opsURL = "127.0.0.1:9060"
	}
	if !strings.Contains(opsURL, "://") {
		opsURL = "http://" + opsURL
	}
	c.base = strings.TrimRight(opsURL, "/")
	tok, err := readAdminToken(tokenFile)
	if err != nil {
		return err
	}
	c.token = tok
	return nil
}

// do sends one request and decodes the JSON answer into v (unless v is
// nil). With -o json the body is also printed as is.
func (c *ctlClient) do(method, path string, q url.Values, body []byte, v any) error {
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequest(method, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "message/sip")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	res, err := c.client.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the ops listener: %w", err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(res.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("read answer: %w", err)
	}
	if res.StatusCode >= 400 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(raw, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(raw))
		}
		return &apiError{code: res.StatusCode, msg: e.Error}
	}
	if c.json {
		_, err := c.out.Write(raw)
		return err
	}
	if v != nil {
		if err := json.Unmarshal(raw, v); err != nil {
			return fmt.Errorf("decode answer: %w", err)
		}
	}
	return nil
}

func (c *ctlClient) table() *tabwriter.Writer { return tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0) }

func (c *ctlClient) printBindings(bs []adminapi.BindingJSON) {
	tw := c.table()
	fmt.Fprintln(tw, "CONTACT\tEXPIRES\tSOURCE\tFLOW\tUSER-AGENT\tINSTANCE\tREG-ID")
	for _, b := range bs {
		flow := "-"
		if b.Flow != nil {
			flow = fmt.Sprintf("#%d %s %s", b.Flow.ID, b.Flow.Transport, b.Flow.Remote)
		} else if b.FlowToken != "" {
			flow = "token (not on this edge)"
		}
		reg := "-"
		if b.RegID != 0 {
			reg = strconv.FormatInt(b.RegID, 10)
		}
		fmt.Fprintf(tw, "%s\t%ds\t%s %s\t%s\t%s\t%s\t%s\n", b.Contact, b.ExpiresIn, b.Source.Transport, b.Source.Address,
			flow, dash(b.UserAgent), dash(b.Instance), reg)
	}
	_ = tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (c *ctlClient) showRegistrations(aor string) error {
	var res adminapi.RegistrationsJSON
	if err := c.do("GET", "/api/v1/registrations", url.Values{"aor": {aor}}, nil, &res); err != nil || c.json {
		return err
	}
	fmt.Fprintf(c.out, "%s: %d binding(s)\n", res.AOR, len(res.Bindings))
	if len(res.Bindings) > 0 {
		c.printBindings(res.Bindings)
	}
	return nil
}

func (c *ctlClient) listRegistrations(cursor string, limit int) error {
	if limit <= 0 {
		limit = 100
	}
	q := url.Values{"limit": {strconv.Itoa(min(limit, registrar.MaxListLimit))}}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	var page registrar.AORPage
	if err := c.do("GET", "/api/v1/registrations", q, nil, &page); err != nil || c.json {
		return err
	}
	tw := c.table()
	fmt.Fprintln(tw, "AOR\tBINDINGS")
	for _, a := range page.AORs {
		fmt.Fprintf(tw, "%s\t%d\n", a.AOR, a.Bindings)
	}
	_ = tw.Flush()
	if page.Next != "" {
		fmt.Fprintf(c.out, "more: pinhole ctl registrations list -cursor '%s'\n", page.Next)
	}
	return nil
}

func (c *ctlClient) removeRegistrations(aor, instance string, regID int64, contact string) error {
	q := url.Values{"aor": {aor}}
	if instance != "" {
		q.Set("instance", instance)
	}
	if regID != 0 {
		q.Set("reg_id", strconv.FormatInt(regID, 10))
	}
	if contact != "" {
		q.Set("contact", contact)
	}
	var res struct {
		AOR     string                 `json:"aor"`
		Removed []adminapi.BindingJSON `json:"removed"`
	}
	if err := c.do("DELETE", "/api/v1/registrations", q, nil, &res); err != nil || c.json {
		return err
	}
	fmt.Fprintf(c.out, "%s: removed %d binding(s)\n", res.AOR, len(res.Removed))
	if len(res.Removed) > 0 {
		c.printBindings(res.Removed)
	}
	return nil
}

type flowJSON struct {
	ID         uint64    `json:"id"`
	Transport  string    `json:"transport"`
	Local      string    `json:"local"`
	Remote     string    `json:"remote"`
	Created    time.Time `json:"created"`
	LastSeen   time.Time `json:"last_seen"`
	Keepalives uint64    `json:"keepalives"`
	Bindings   []struct {
		AOR      string `json:"aor"`
		Instance string `json:"instance"`
		RegID    int64  `json:"reg_id"`
	} `json:"bindings"`
}

func (c *ctlClient) listFlows(aor, transport, remote string, limit int) error {
	q := url.Values{}
	for k, v := range map[string]string{"aor": aor, "transport": transport, "remote": remote} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var res struct {
		Flows []flowJSON `json:"flows"`
	}
	if err := c.do("GET", "/api/v1/flows", q, nil, &res); err != nil || c.json {
		return err
	}
	tw := c.table()
	fmt.Fprintln(tw, "ID\tTRANSPORT\tREMOTE\tLOCAL\tAGE\tIDLE\tKEEPALIVES\tBINDINGS")
	now := time.Now()
	for _, f := range res.Flows {
		var ids []string
		for _, b := range f.Bindings {
			ids = append(ids, fmt.Sprintf("%s %s reg-id %d", b.AOR, b.Instance, b.RegID))
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", f.ID, f.Transport, f.Remote, f.Local,
			now.Sub(f.Created).Truncate(time.Second), now.Sub(f.LastSeen).Truncate(time.Second), f.Keepalives,
			dash(strings.Join(ids, "; ")))
	}
	return tw.Flush()
}

func (c *ctlClient) closeFlow(id string) error {
	if _, err := strconv.ParseUint(id, 10, 64); err != nil {
		return errors.New("flow ID must be a number (see flows list)")
	}
	var res struct {
		Closed flowJSON `json:"closed"`
	}
	if err := c.do("DELETE", "/api/v1/flows/"+id, nil, nil, &res); err != nil || c.json {
		return err
	}
	fmt.Fprintf(c.out, "closed flow %d (%s %s)\n", res.Closed.ID, res.Closed.Transport, res.Closed.Remote)
	return nil
}

func (c *ctlClient) listBans() error {
	var res struct {
		Auth bool `json:"auth"`
		Bans []struct {
			Address  string    `json:"address"`
			User     string    `json:"user"`
			Until    time.Time `json:"until"`
			Failures int64     `json:"failures"`
		} `json:"bans"`
	}
	if err := c.do("GET", "/api/v1/bans", nil, nil, &res); err != nil || c.json {
		return err
	}
	if !res.Auth {
		fmt.Fprintln(c.out, "authentication is off: nothing is banned")
		return nil
	}
	tw := c.table()
	fmt.Fprintln(tw, "ADDRESS\tUSER\tUNTIL\tFAILURES")
	for _, b := range res.Bans {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\n", b.Address, dash(b.User), b.Until.Format(time.RFC3339), b.Failures)
	}
	return tw.Flush()
}

func (c *ctlClient) removeBan(ip, user string) error {
	q := url.Values{"address": {ip}}
	if user != "" {
		q.Set("user", user)
	}
	var res struct {
		Lifted bool `json:"lifted"`
	}
	if err := c.do("DELETE", "/api/v1/bans", q, nil, &res); err != nil || c.json {
		return err
	}
	if res.Lifted {
		fmt.Fprintf(c.out, "ban of %s lifted\n", ip)
	} else {
		fmt.Fprintf(c.out, "%s was not banned (failure counters reset)\n", ip)
	}
	return nil
}

func (c *ctlClient) explain(file, source string, stdin io.Reader) error {
	var raw []byte
	var err error
	if file == "-" {
		raw, err = io.ReadAll(io.LimitReader(stdin, adminapi.MaxBodyBytes+1))
	} else {
		raw, err = os.ReadFile(file)
	}
	if err != nil {
		return fmt.Errorf("read REGISTER: %w", err)
	}
	q := url.Values{}
	if source != "" {
		q.Set("source", source)
	}
	var res struct {
		Source   string   `json:"source"`
		Status   int      `json:"status"`
		Reason   string   `json:"reason"`
		Response []string `json:"response"`
		Steps    []string `json:"steps"`
	}
	if err := c.do("POST", "/api/v1/explain", q, raw, &res); err != nil || c.json {
		return err
	}
	fmt.Fprintf(c.out, "outcome: %d %s (from %s; dry run, nothing changed)\n\nsteps:\n", res.Status, res.Reason, res.Source)
	for i, s := range res.Steps {
		fmt.Fprintf(c.out, "  %d. %s\n", i+1, s)
	}
	fmt.Fprintln(c.out, "\nresponse:")
	for _, l := range res.Response {
		fmt.Fprintln(c.out, "  "+l)
	}
	return nil
}

func (c *ctlClient) status() error {
	var st adminapi.Status
	if err := c.do("GET", "/api/v1/status", nil, nil, &st); err != nil || c.json {
		return err
	}
	tw := c.table()
	fmt.Fprintf(tw, "roles:\t%s\n", strings.Join(st.Roles, ", "))
	fmt.Fprintf(tw, "version:\t%s\n", st.Version)
	fmt.Fprintf(tw, "uptime:\t%s\n", time.Duration(st.UptimeSeconds)*time.Second)
	ready := "yes"
	if !st.Ready {
		var rs []string
		for k, v := range st.NotReady {
			rs = append(rs, k+": "+v)
		}
		sort.Strings(rs)
		ready = "no (" + strings.Join(rs, "; ") + ")"
	}
	fmt.Fprintf(tw, "ready:\t%s\n", ready)
	if st.Counts.Bindings != nil {
		fmt.Fprintf(tw, "bindings:\t%d\n", *st.Counts.Bindings)
	}
	if st.Counts.AORs != nil {
		fmt.Fprintf(tw, "aors:\t%d\n", *st.Counts.AORs)
	}
	if st.Store != nil {
		s := "ok"
		if !st.Store.OK {
			s = "down: " + st.Store.Error
		}
		fmt.Fprintf(tw, "store:\t%s\n", s)
	}
	var ts []string
	for t := range st.Counts.Flows {
		ts = append(ts, t)
	}
	sort.Strings(ts)
	for _, t := range ts {
		fmt.Fprintf(tw, "flows %s:\t%d\n", t, st.Counts.Flows[t])
	}
	for _, p := range st.PBX {
		fmt.Fprintf(tw, "pbx %s:\t%s\n", p.URI, upDown(p.Up))
	}
	for _, r := range st.Registrars {
		fmt.Fprintf(tw, "registrar %s:\t%s\n", r.URI, upDown(r.Up))
	}
	return tw.Flush()
}

func upDown(up bool) string {
	if up {
		return "up"
	}
	return "down"
}

func (c *ctlClient) diagnostics(aor, fingerprint string) error {
	q := url.Values{}
	if aor != "" {
		q.Set("aor", aor)
	}
	if fingerprint != "" {
		q.Set("fingerprint", fingerprint)
	}
	var res struct {
		Findings []diagnostics.Finding `json:"findings"`
	}
	if err := c.do("GET", "/api/v1/diagnostics", q, nil, &res); err != nil || c.json {
		return err
	}
	if len(res.Findings) == 0 {
		fmt.Fprintln(c.out, "no findings")
		return nil
	}
	for _, f := range res.Findings {
		fmt.Fprintf(c.out, "%s  %s  device %s  ×%d  since %s\n", f.Fingerprint, f.AOR, f.Device, f.Count,
			f.FirstSeen.Format(time.RFC3339))
		for _, e := range f.Evidence {
			fmt.Fprintf(c.out, "    %s  %s\n", e.Time.Format(time.RFC3339), e.Text)
		}
		fmt.Fprintf(c.out, "    fix: %s\n", f.Fix)
	}
	return nil
}
