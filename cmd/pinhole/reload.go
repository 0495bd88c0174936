package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/pinhole-sip/pinhole/edge"
	"github.com/pinhole-sip/pinhole/flowtable"
	"github.com/pinhole-sip/pinhole/internal/usersfile"
	"github.com/pinhole-sip/pinhole/registrar"
	"github.com/pinhole-sip/pinhole/registrar/auth"
)

// catchHUP takes SIGHUP away from its default action (terminate) as early
// as possible, so `systemctl reload` never kills a node of any role, even
// during start-up. serveReload consumes the channel.
func catchHUP() chan os.Signal {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	return hup
}

// serveReload re-reads on every SIGHUP what can change without a restart:
// the log level, and each role's files (reloaders). It stops with ctx.
func serveReload(ctx context.Context, hup chan os.Signal, path string, logs *logState, logger *slog.Logger, reloaders []func(*Config) error) {
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			reload(path, logs, logger, reloaders)
		}
	}
}

// reload applies one SIGHUP. A configuration file that no longer loads is
// logged and nothing changes; otherwise each part is reloaded on its own,
// and a part whose file is broken keeps its previous state.
func reload(path string, logs *logState, logger *slog.Logger, reloaders []func(*Config) error) {
	cfg, err := loadConfig(path)
	if err != nil {
		logger.Error("reload: configuration does not load; keeping the running state", "error", err)
		return
	}
	logs.setLevel(cfg.Log.Level)
	var errs []error
	for _, r := range reloaders {
		if err := r(cfg); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		logger.Error("reload: some files did not load; their previous state is kept", "error", err)
		return
	}
	logger.Info("reloaded on SIGHUP", "log_level", cfg.Log.Level)
}

// edgeReloader rotates the flow-token keys (the new file's first key signs,
// every key used so far keeps verifying, no flow is dropped) and re-reads
// the TLS certificates.
func edgeReloader(e *edge.Server) func(*Config) error {
	return func(cfg *Config) error {
		e.ReloadCertificates()
		if cfg.Edge == nil || cfg.Edge.FlowTokenKeyFile == "" {
			return nil
		}
		b, err := os.ReadFile(cfg.Edge.FlowTokenKeyFile)
		if err != nil {
			return fmt.Errorf("edge.flow_token_key_file: %w", err)
		}
		keys, err := flowtable.ParseKeys(b)
		if err != nil {
			return fmt.Errorf("edge.flow_token_key_file: %w", err)
		}
		e.RotateFlowTokenKeys(keys)
		return nil
	}
}

// registrarReloader re-reads the users file and the nonce and GRUU
// secrets; previous secrets keep verifying what they signed.
func registrarReloader(reg *registrar.Registrar, users *usersfile.File, v *auth.Verifier) func(*Config) error {
	return func(cfg *Config) error {
		if cfg.Registrar == nil {
			return nil
		}
		rc := cfg.Registrar
		var errs []error
		if users != nil {
			if err := users.Reload(); err != nil {
				errs = append(errs, fmt.Errorf("registrar.auth.users_file: %w", err))
			}
		}
		if v != nil && rc.Auth.NonceSecretFile != "" {
			secrets, err := readNonceSecrets(rc.Auth.NonceSecretFile)
			if err == nil {
				err = v.SetNonceSecrets(secrets)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("registrar.auth.nonce_secret_file: %w", err))
			}
		}
		if rc.GRUUSecretFile != "" {
			b, err := os.ReadFile(rc.GRUUSecretFile)
			if err == nil {
				err = reg.SetGRUUSecret(b)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("registrar.gruu_secret_file: %w", err))
			}
		}
		return errors.Join(errs...)
	}
}
