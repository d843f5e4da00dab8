// Command kfake is a development Kafka for `make run` with
// SHOPFLOOR_STREAM_ENGINE=kafka (ADR 0046): franz-go's kfake, an
// in-process implementation of the Kafka protocol (produce, fetch,
// consumer groups, offsets, topics), as one broker on a loopback port,
// with its log on disk (KFAKE_DATA_DIR) so that a restart keeps the
// topics and the groups' offsets. It is not Kafka: no replication, no
// JVM-compatible storage, no performance figure means anything for a
// cluster. The compose profile runs apache/kafka instead
// (deploy/compose/compose.kafka.yaml).
//
// Environment: KFAKE_PORT (the broker's port, on 127.0.0.1), KFAKE_DATA_DIR
// (empty: in memory only), KFAKE_HEALTH_ADDR (host:port of GET /healthz,
// 200 once the broker listens; for run.sh's wait_ready).
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	if err := run(ctx, os.Getenv, log); err != nil {
		log.Error("kfake", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, getenv func(string) string, log *slog.Logger) error {
	port, err := strconv.Atoi(getenv("KFAKE_PORT"))
	if err != nil || port <= 0 || port > 65535 {
		return fmt.Errorf("KFAKE_PORT: %q is not a port", getenv("KFAKE_PORT"))
	}
	opts := []kfake.Opt{kfake.Ports(port), kfake.ClusterID("shopfloor-dev"),
		// The services create their topics (EnsureTopic); a typo in a
		// topic name must fail, not create an empty topic.
		kfake.BrokerConfigs(map[string]string{"auto.create.topics.enable": "false"})}
	if dir := getenv("KFAKE_DATA_DIR"); dir != "" {
		// Every acknowledged produce is on disk before the ack, as
		// acks=all on a real cluster promises across a broker's crash.
		opts = append(opts, kfake.DataDir(dir), kfake.SyncWrites())
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return fmt.Errorf("kfake: %w", err)
	}
	defer c.Close()
	log.Info("kfake listening", "addrs", c.ListenAddrs(), "data_dir", getenv("KFAKE_DATA_DIR"))
	addr := getenv("KFAKE_HEALTH_ADDR")
	if addr == "" {
		<-ctx.Done()
		return nil
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
