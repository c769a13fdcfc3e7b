// Command ferretdb runs FerretDB v1.24.2 with its SQLite backend as the
// project's dev/test MongoDB-compatible server.
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
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:27017", "TCP address to listen on; port 0 picks a free port")
	dataDir := flag.String("data", "var/ferretdb", "directory holding the SQLite files (created if missing)")
	uriFile := flag.String("uri-file", "", "if set, write the MongoDB URI here once the port is bound")
	logLevel := flag.String("log-level", "warn", "debug, info, warn or error")
	flag.Parse()

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fatal("bad -log-level: %v", err)
	}
	logger := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	dir, err := filepath.Abs(*dataDir)
	if err != nil {
		fatal("bad -data: %v", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		fatal("cannot create data directory: %v", err)
	}

	f, err := ferretdb.New(&ferretdb.Config{
		Listener: ferretdb.ListenerConfig{TCP: *listen},
		Handler:  "sqlite",
		// FerretDB requires the SQLite URL to be a directory ending with a slash.
		SQLiteURL: "file:" + dir + "/",
		Logger:    logger,
	})
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
	fmt.Fprintf(os.Stderr, "ferretdb listening on %s (data in %s)\n", uri, dir)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	_ = f.Run(ctx)
}

func fatal(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "ferretdb: "+format+"\n", args...)
	os.Exit(1)
}
