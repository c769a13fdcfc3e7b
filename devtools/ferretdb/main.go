// Command ferretdb runs FerretDB v1.24.2 as the project's dev/test
// MongoDB-compatible server, on its PostgreSQL backend when -postgresql-url is
// given (what `make run` and the tests use), else on its SQLite backend.
//
// It embeds the github.com/FerretDB/FerretDB/ferretdb package because the
// upstream cmd/ferretdb binary panics when built from the module zip (its
// generated version.txt is missing; FerretDB issues #2982, #4889).
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:27017", "TCP address to listen on; port 0 picks a free port")
	dataDir := flag.String("data", "var/ferretdb", "SQLite backend: directory holding the SQLite files (created if missing)")
	pgURL := flag.String("postgresql-url", "", "if set, use the PostgreSQL backend with this URL (postgres://user@host:port/database) instead of SQLite")
	uriFile := flag.String("uri-file", "", "if set, write the MongoDB URI here once the port is bound")
	logLevel := flag.String("log-level", "warn", "debug, info, warn or error")
	flag.Parse()

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fatal("bad -log-level: %v", err)
	}
	logger := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	config := &ferretdb.Config{
		Listener: ferretdb.ListenerConfig{TCP: *listen},
		Logger:   logger,
	}
	var backend string
	if *pgURL != "" {
		u, err := url.Parse(*pgURL)
		if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
			fatal("bad -postgresql-url: want postgres://user@host:port/database")
		}
		// FerretDB connects lazily, on the first command that needs the
		// database: it starts even while PostgreSQL is still starting, and
		// reconnects after a PostgreSQL restart.
		config.Handler = "postgresql"
		config.PostgreSQLURL = *pgURL
		backend = "PostgreSQL " + u.Redacted()
	} else {
		dir, err := filepath.Abs(*dataDir)
		if err != nil {
			fatal("bad -data: %v", err)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			fatal("cannot create data directory: %v", err)
		}
		config.Handler = "sqlite"
		// FerretDB requires the SQLite URL to be a directory ending with a slash.
		config.SQLiteURL = "file:" + dir + "/"
		backend = "SQLite in " + dir
	}

	f, err := ferretdb.New(config)
	if err != nil {
		fatal("cannot start FerretDB: %v", err)
	}

	uri := f.MongoDBURI()
	if *uriFile != "" {
		// Write then rename so a reader polling for the file never sees half a URI.
		tmp := *uriFile + ".tmp"
		if err := os.WriteFile(tmp, []byte(uri+"\n"), 0o644); err != nil {
			fatal("cannot write -uri-file: %v", err)
		}
		if err := os.Rename(tmp, *uriFile); err != nil {
			fatal("cannot write -uri-file: %v", err)
		}
	}
	fmt.Fprintf(os.Stderr, "ferretdb listening on %s (%s)\n", uri, backend)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	_ = f.Run(ctx)
}

func fatal(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "ferretdb: "+format+"\n", args...)
	os.Exit(1)
}
