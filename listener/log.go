package listener

import (
	"context"
	"log/slog"
	"time"
)

// logger wraps the configured *slog.Logger with the records a
// ProxyListener writes, so that their keys stay the same everywhere.
type logger struct{ l *slog.Logger }

func (g logger) acceptFailed(err error, retryIn time.Duration) {
	if retryIn == 0 {
		g.l.Error("accept failed; serving stops", "err", err)
		return
	}
	g.l.Error("accept failed; retrying", "err", err, "retry_in", retryIn)
}

func (g logger) clientFailed(info *SessionInfo) {
	g.l.Warn("client closed",
		"session", info.ID, "client", info.ClientAddr, "err", info.Err)
}

// endedLevel is the level of a session's "session ended" record.
func endedLevel(err error) slog.Level {
	if err != nil {
		return slog.LevelWarn
	}
	return slog.LevelDebug
}

// logsEnded reports whether the "session ended" record of a session that
// ended with err is enabled; sessionEnded is to be called only then.
func (g logger) logsEnded(err error) bool {
	return g.l.Enabled(context.Background(), endedLevel(err))
}

// sessionEnded writes the "session ended" record; the caller checked
// logsEnded, so that a disabled record costs no SessionInfo.
func (g logger) sessionEnded(info *SessionInfo) {
	level := endedLevel(info.Err)
	r := &info.Result
	g.l.Log(context.Background(), level, "session ended",
		"session", info.ID,
		"client", info.ClientAddr,
		"upstream", info.UpstreamAddr,
		"to_upstream", r.Up.Written,
		"to_client", r.Down.Written,
		"duration", info.Duration,
		"first", r.First.String(),
		"end", r.FirstEnd.String(),
		"source", info.Source.String(),
		"outcome", info.Outcome.String(),
		"err", info.Err)
}
