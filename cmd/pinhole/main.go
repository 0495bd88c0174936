// Command pinhole runs Pinhole's roles (edge and registrar) from one YAML
// configuration file.
//
//	pinhole -config FILE          run the roles whose sections are present
//	pinhole check-config FILE     check FILE and every file it names; print every error with its line
//	pinhole hash-password -realm R -user U   print a users-file ha1 block for the password on stdin
//	pinhole ctl COMMAND           operator client of the admin API (registrations, flows, bans, ...)
//	pinhole version               print the module version and VCS revision
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pinhole-sip/pinhole/edge"
	"github.com/pinhole-sip/pinhole/internal/memtrim"
	"github.com/pinhole-sip/pinhole/internal/ops"
	"github.com/pinhole-sip/pinhole/internal/siptune"
	"github.com/pinhole-sip/pinhole/internal/usersfile"
	"github.com/pinhole-sip/pinhole/registrar"
	"github.com/pinhole-sip/pinhole/registrar/auth"
	"github.com/pinhole-sip/pinhole/registrar/location"
	"github.com/pinhole-sip/pinhole/registrar/memstore"
)

// version is set with -ldflags "-X main.version=..."; otherwise the module
// build info is used.
var version = ""

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// commands are the subcommands, for the usage text.
var commands = []struct{ synopsis, help string }{
	{"-config FILE", "run the roles (edge, registrar) whose sections FILE has"},
	{"check-config FILE", "check FILE and every file it names (keys, secrets, users, certificates);\nprint each problem as FILE:LINE: key.path: problem, exit 1 if any"},
	{"hash-password -realm R -user U", "read a password on stdin, print the users-file ha1 block"},
	{"ctl COMMAND", "operator client of the admin API: registrations, flows, bans, explain,\ndiagnostics, status (pinhole ctl -h lists them)"},
	{"version", "print the module version and the VCS revision, time and state it was built from"},
	{"help", "print this text"},
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage:")
	for _, c := range commands {
		lines := strings.Split(c.help, "\n")
		fmt.Fprintf(w, "  pinhole %-32s %s\n", c.synopsis, lines[0])
		for _, l := range lines[1:] {
			fmt.Fprintf(w, "  %-40s %s\n", "", l)
		}
	}
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "version":
			fmt.Fprintln(stdout, "pinhole", versionString())
			return 0
		case "help", "-h", "-help", "--help":
			usage(stdout)
			return 0
		case "check-config":
			if len(args) != 2 {
				fmt.Fprintln(stderr, "usage: pinhole check-config FILE")
				return 2
			}
			if _, err := checkConfig(args[1], time.Now()); err != nil {
				fmt.Fprintln(stderr, err)
				return 1
			}
			fmt.Fprintln(stdout, args[1]+": ok")
			return 0
		case "hash-password":
			return hashPassword(args[1:], stdin, stdout, stderr)
		case "ctl":
			return ctl(args[1:], stdin, stdout, stderr)
		}
	}
	fs := flag.NewFlagSet("pinhole", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { usage(stderr) }
	cfgPath := fs.String("config", "", "configuration file (YAML)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *cfgPath == "" || fs.NArg() > 0 {
		usage(stderr)
		return 2
	}
	hup := catchHUP()
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	cfg.path, cfg.hup = *cfgPath, hup
	logger, logs := newLogger(cfg.Log, stderr)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := serve(ctx, cfg, logger, logs); err != nil {
		logger.Error("pinhole stopped", "error", err)
		return 1
	}
	return 0
}

// versionString is the module version (from -ldflags -X main.version, or
// the build info, where Go 1.24+ derives it from the VCS tag or commit)
// followed by the VCS revision, commit time and "modified" when the work
// tree had uncommitted changes. `go run` and -buildvcs=false builds carry
// no VCS information; that is said rather than left as a bare "(devel)".
func versionString() string {
	bi, ok := debug.ReadBuildInfo()
	v := version
	if v == "" && ok {
		v = bi.Main.Version
	}
	if v == "" {
		v = "(devel)"
	}
	if !ok {
		return v
	}
	vcs := map[string]string{}
	for _, s := range bi.Settings {
		vcs[s.Key] = s.Value
	}
	var parts []string
	if r := vcs["vcs.revision"]; r != "" {
		parts = append(parts, "revision "+r)
	}
	if t := vcs["vcs.time"]; t != "" {
		parts = append(parts, "committed "+t)
	}
	if vcs["vcs.modified"] == "true" {
		parts = append(parts, "modified")
	}
	if len(parts) == 0 {
		parts = append(parts, "no VCS information (built by go run or with -buildvcs=false)")
	}
	return v + " (" + strings.Join(parts, ", ") + ") " + bi.GoVersion
}

// newAuth builds Digest authentication: the users file (reloaded on
// change and on SIGHUP) and the nonce/failure state, shared through Redis
// when the bindings are.
func newAuth(ctx context.Context, rc *RegistrarConfig, store registrar.Store, logger *slog.Logger) (*auth.Verifier, *usersfile.File, error) {
	uf, err := usersfile.Load(rc.Auth.UsersFile, rc.Auth.Realm, rc.Auth.AllowPlaintext)
	if err != nil {
		return nil, nil, err
	}
	users := uf.Users()
	go uf.Watch(ctx, time.Second, logger) // SIGHUP also reloads it (reload.go)
	acfg := rc.Auth
	if acfg.NonceSecrets, err = readNonceSecrets(acfg.NonceSecretFile); err != nil {
		return nil, nil, err
	}
	v, err := auth.New(acfg, users, newAuthState(rc.Store, store), logger, time.Now)
	if err != nil {
		return nil, nil, fmt.Errorf("auth: %w", err)
	}
	return v, uf, nil
}

// role is one running part of the process (registrar, edge).
type role struct {
	name   string
	served chan error // receives once when the role's listeners stop
	drain  func(time.Duration) bool
	close  func() error
	reload func(*Config) error // on SIGHUP (reload.go)
	// For the admin API (admin.go): the role's server.
	registrar *registrar.Server
	location  *location.Proxy
	edge      *edge.Server
}

// serve wires the configured roles, runs them until ctx is cancelled
// (SIGTERM), then drains: /readyz turns not-ready, new transactions get
// 503, in-flight ones get up to ops.drain_timeout to finish.
func serve(ctx context.Context, cfg *Config, logger *slog.Logger, logs *logState) error {
	siptune.Apply()
	// sipgo's transports log through its package default logger; route
	// them through ours so the format and level settings apply.
	sip.SetDefaultLogger(logger.With("component", "sipgo"))
	routeRedisLogs(logger)

	// The ops server serves from the start (liveness, metrics), but
	// /readyz says "starting" until every role is bound, serving and has
	// registered its checks (o.Started below).
	o := ops.New(logger)
	if cfg.Ops.Pprof {
		o.EnablePprof()
		logger.Warn("ops.pprof: /debug/pprof/ served on the ops listener", "addr", cfg.Ops.Listen)
	}
	if err := o.Listen(cfg.Ops.Listen); err != nil {
		return err
	}
	if err := logs.register(o.Registry); err != nil {
		return err
	}
	// After a load peak, hand the heap's free pages back to the OS
	// (internal/memtrim): PSS otherwise stays at the peak while idle.
	trims := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "pinhole_memory_trims_total",
		Help: "Times the process returned free heap memory to the OS after a load peak.",
	})
	if err := o.Registry.Register(trims); err != nil {
		return fmt.Errorf("register memory metrics: %w", err)
	}
	go (&memtrim.Trimmer{Log: logger, Trims: trims}).Run(ctx)
	go func() {
		if err := o.Serve(); err != nil {
			logger.Error("ops server", "error", err)
		}
	}()
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = o.Shutdown(sctx)
	}()

	var roles []*role
	defer func() {
		for _, r := range roles {
			_ = r.close()
		}
	}()
	if cfg.Registrar != nil {
		r, closeStore, err := startRegistrar(ctx, cfg.Registrar, o, logger)
		if closeStore != nil {
			defer closeStore()
		}
		if err != nil {
			return err
		}
		roles = append(roles, r)
	}
	if cfg.Edge != nil {
		r, err := startEdge(cfg.Edge, o, logger)
		if err != nil {
			return err
		}
		roles = append(roles, r)
	}
	for _, r := range roles {
		o.AddCheck(r.name+"_listeners", func(context.Context) error {
			select {
			case err := <-r.served:
				r.served <- err
				return fmt.Errorf("SIP listeners stopped: %v", err)
			default:
				return nil
			}
		})
	}
	if cfg.hup != nil {
		var reloaders []func(*Config) error
		for _, r := range roles {
			reloaders = append(reloaders, r.reload)
		}
		rctx, stopReload := context.WithCancel(ctx)
		defer stopReload()
		go serveReload(rctx, cfg.hup, cfg.path, logs, logger, reloaders)
	}
	if err := enableAdmin(ctx, cfg, o, roles, logger); err != nil {
		return err
	}
	o.Started()
	logger.Info("pinhole started", "version", versionString(), "ops", o.Addr().String())

	var runErr error
	stopped := make(chan error, len(roles))
	for _, r := range roles {
		go func(r *role) {
			err := <-r.served
			r.served <- err
			if err == nil {
				err = errors.New("SIP listeners stopped")
			}
			stopped <- fmt.Errorf("%s: %w", r.name, err)
		}(r)
	}
	select {
	case <-ctx.Done():
	case runErr = <-stopped:
	}
	logger.Info("shutting down: draining", "timeout", cfg.Ops.DrainTimeout.String())
	o.SetDraining()
	var wg sync.WaitGroup
	for _, r := range roles {
		wg.Add(1)
		go func(r *role) {
			defer wg.Done()
			if !r.drain(cfg.Ops.DrainTimeout) {
				logger.Warn("drain timeout reached with transactions in flight", "role", r.name)
			}
		}(r)
	}
	wg.Wait()
	logger.Info("pinhole stopped")
	return runErr
}

// startEdge binds the edge listeners and starts serving.
func startEdge(ec *edge.Config, o *ops.Server, logger *slog.Logger) (*role, error) {
	e, err := edge.New(*ec, edge.Options{Logger: logger, Registry: o.Registry})
	if err != nil {
		return nil, err
	}
	if err := e.Listen(); err != nil {
		_ = e.Close()
		return nil, err
	}
	r := &role{name: "edge", served: make(chan error, 1), drain: e.Drain, close: e.Close, reload: edgeReloader(e), edge: e}
	go func() { r.served <- e.Serve() }()
	o.AddCheck("edge", e.Ready)
	addrs := make([]string, 0, len(e.Addrs()))
	for _, a := range e.Addrs() {
		addrs = append(addrs, strings.ToLower(a.Transport)+"/"+a.Addr.String()+"/"+a.Role)
	}
	logger.Info("edge listening", "addrs", addrs, "registrar", []string(ec.Registrar))
	return r, nil
}

// startRegistrar builds the store, auth and SIP server of the registrar
// role and starts serving.
func startRegistrar(ctx context.Context, rc *RegistrarConfig, o *ops.Server, logger *slog.Logger) (*role, func(), error) {
	store, err := newStore(rc.Store)
	if err != nil {
		return nil, nil, err
	}
	closeStore := func() { _ = store.Close() }
	if ms, ok := store.(*memstore.Store); ok {
		go ms.Start(ctx)
	}
	opts := registrar.Options{Logger: logger, Registry: o.Registry}
	var uf *usersfile.File
	if rc.Auth.Enabled {
		if opts.Auth, uf, err = newAuth(ctx, rc, store, logger); err != nil {
			return nil, closeStore, err
		}
		opts.Users = uf.Users()
	}
	reg, err := registrar.New(rc.Config, store, opts)
	if err != nil {
		return nil, closeStore, err
	}
	srv, err := registrar.NewServer(reg, logger)
	if err != nil {
		return nil, closeStore, err
	}
	if err := srv.Listen(rc.Listen); err != nil {
		_ = srv.Close()
		return nil, closeStore, err
	}
	// The location service (non-REGISTER requests, PBX dispatch and
	// probing) is built on the bound listeners and installed as the
	// server's router.
	loc, err := location.Attach(srv, reg, rc.Config, o.Registry)
	if err != nil {
		_ = srv.Close()
		return nil, closeStore, err
	}
	r := &role{name: "registrar", served: make(chan error, 1), drain: srv.Drain, close: srv.Close,
		reload: registrarReloader(reg, uf, opts.Auth), registrar: srv, location: loc}
	go func() { r.served <- srv.Serve() }()
	o.AddCheck("registrar", srv.Ready)
	o.AddCheck("registrar_store", reg.Ready)
	if len(rc.PBX) > 0 {
		o.AddCheck("registrar_pbx", loc.PBXReady)
	}
	addrs := make([]string, 0, len(srv.Addrs()))
	for _, a := range srv.Addrs() {
		addrs = append(addrs, a.Network()+"/"+a.String())
	}
	logger.Info("registrar listening", "addrs", addrs, "store", rc.Store.Backend, "domains", rc.Domains,
		"auth", rc.Auth.Enabled)
	return r, closeStore, nil
}
