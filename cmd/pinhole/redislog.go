package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/redis/go-redis/v9"
)

// redisLogger sends go-redis's own messages (reconnects, sentinel
// failovers) through slog, so JSON logs stay JSON (issue 14 item 7).
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	msg := strings.TrimSpace(fmt.Sprintf(format, v...))
	if len(msg) > 300 {
		msg = msg[:300] + "…"
	}
	l.log.WarnContext(ctx, "redis client", "detail", msg)
}

// routeRedisLogs installs redisLogger process-wide (go-redis has one
// package-level logger).
func routeRedisLogs(logger *slog.Logger) {
	redis.SetLogger(redisLogger{logger.With("component", "redis")})
}
