package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/pinhole-sip/pinhole/internal/adminapi"
	"github.com/pinhole-sip/pinhole/internal/diagnostics"
	"github.com/pinhole-sip/pinhole/internal/ops"
)

// enableAdmin mounts the admin API and status page on the ops listener
// (ops.admin_token_file decides the access rule) and starts the status
// page's sampler.
func enableAdmin(ctx context.Context, cfg *Config, o *ops.Server, roles []*role, logger *slog.Logger) error {
	token, err := readAdminToken(cfg.Ops.AdminTokenFile)
	if err != nil {
		return err
	}
	opt := adminapi.Options{Version: versionString(), Ready: o.Ready, Gatherer: o.Registry, Logger: logger}
	for _, r := range roles {
		if r.registrar != nil {
			opt.PBX = r.location
			opt.Registrar = r.registrar.Registrar()
		}
		if r.edge != nil {
			opt.Edge = r.edge
		}
	}
	// Live diagnostics: one detector per process, fed by both roles.
	diag, err := diagnostics.New(cfg.Ops.Diagnostics, o.Registry, logger, nil)
	if err != nil {
		return err
	}
	opt.Diagnostics = diag
	if opt.Registrar != nil {
		opt.Registrar.SetObserver(diag)
	}
	if e := opt.Edge; e != nil {
		e.SetFlowObserver(diag)
		go diag.RunFlowCheck(ctx, e.BoundFlows, e.FlowTimer)
	}
	api := adminapi.New(opt)
	state, err := o.EnableAdmin(api, token)
	if err != nil {
		return err
	}
	if state != ops.AdminOff {
		go api.Run(ctx)
	}
	logger.Info("admin API", "access", string(state))
	return nil
}

// readAdminToken reads the bearer token: the file's first line, trimmed.
func readAdminToken(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("ops.admin_token_file: %w", err)
	}
	tok, _, _ := strings.Cut(string(b), "\n")
	tok = strings.TrimSpace(tok)
	if len(tok) < 16 {
		return "", fmt.Errorf("ops.admin_token_file %s: token shorter than 16 characters", path)
	}
	return tok, nil
}
