package compose_test

import (
	"encoding/base64"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
)

// kafkaOverlay moves the streams from NATS JetStream to a single-node
// Kafka (ADR 0044); kafkaFiles is how docs/streams-kafka.md runs it.
const kafkaOverlay = "compose.kafka.yaml"

var kafkaFiles = []string{"compose.yaml", kafkaOverlay}

// kafkaBrokers is what every stream client is given: the broker's
// advertised PLAINTEXT listener.
const kafkaBrokers = "kafka:9092"

// loadKafka is compose.yaml with the Kafka overlay and the kafka profile
// (and observability's), .env.example and the test secrets.
func loadKafka(t *testing.T) *types.Project {
	t.Helper()
	p, err := loadWith(kafkaFiles, []string{"observability", "kafka"}, ".env.example", testSecrets)
	if err != nil {
		t.Fatalf("compose.yaml with %s and --profile kafka does not load: %v", kafkaOverlay, err)
	}
	return p
}

// streamEngineVars are the variables that choose and reach the stream
// engine; without the overlay no service has any of them (NATS, the
// default engine).
var streamEngineVars = []string{"STREAM_ENGINE", "KAFKA_BROKERS"}

// TestKafkaOverlayNeedsTheProfile: the overlay without `--profile kafka`
// is refused (every client waits for a kafka only the profile starts);
// the profile without the overlay starts no Kafka and changes nothing.
func TestKafkaOverlayNeedsTheProfile(t *testing.T) {
	t.Parallel()
	_, err := loadWith(kafkaFiles, []string{"observability"}, ".env.example", testSecrets)
	if err == nil || !strings.Contains(err.Error(), `depends on undefined service "kafka"`) {
		t.Errorf("%s without --profile kafka: %v, want a refusal naming kafka", kafkaOverlay, err)
	}
	profileOnly, err := loadWith([]string{"compose.yaml"}, []string{"observability", "kafka"}, ".env.example", testSecrets)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := profileOnly.Services["kafka"]; ok {
		t.Error("compose.yaml --profile kafka runs kafka without the overlay")
	}
	if got, want := slices.Sorted(maps.Keys(profileOnly.Services)), slices.Sorted(maps.Keys(load(t).Services)); !slices.Equal(got, want) {
		t.Errorf("compose.yaml --profile kafka runs %v, want compose.yaml's %v", got, want)
	}
}

// TestNATSIsTheDefaultEngine: without the Kafka overlay (compose.yaml
// alone, with the kafka profile, or with the cluster overlay) no service
// has STREAM_ENGINE or KAFKA_BROKERS, so every one runs on NATS, and none
// waits for a kafka.
func TestNATSIsTheDefaultEngine(t *testing.T) {
	t.Parallel()
	profileOnly, err := loadWith([]string{"compose.yaml"}, []string{"observability", "kafka"}, ".env.example", testSecrets)
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range servicesOf(load(t), profileOnly, loadCluster(t)) {
		for _, k := range streamEngineVars {
			if v, ok := s.Environment[k]; ok && v != nil {
				t.Errorf("%s: %s=%s without %s", name, k, *v, kafkaOverlay)
			} else if ok {
				t.Errorf("%s: %s without %s", name, k, kafkaOverlay)
			}
		}
		if _, ok := s.DependsOn["kafka"]; ok {
			t.Errorf("%s: waits for kafka without %s", name, kafkaOverlay)
		}
	}
}

// TestKafkaOverlayMovesEveryStreamClient: every service that connects to
// NATS without the overlay (NATS_URL in compose.yaml: the relays, the
// consumers and their services' api and worker roles) gets
// STREAM_ENGINE=kafka and KAFKA_BROKERS=kafka:9092, waits for a healthy
// kafka instead of nats, and keeps no NATS address or credentials; no
// other service gets either variable. NATS still runs with its users, for
// the console's NATS-only tools (web keeps the operator's password).
func TestKafkaOverlayMovesEveryStreamClient(t *testing.T) {
	t.Parallel()
	single, p := load(t), loadKafka(t)
	var want []string
	for name, s := range single.Services {
		if s.Environment["NATS_URL"] != nil {
			want = append(want, name)
		}
	}
	if len(want) < 15 {
		t.Fatalf("only %d NATS clients in compose.yaml: %v", len(want), want)
	}
	var got []string
	for name, s := range p.Services {
		engine := s.Environment["STREAM_ENGINE"]
		if engine == nil {
			if s.Environment["KAFKA_BROKERS"] != nil {
				t.Errorf("%s: KAFKA_BROKERS without STREAM_ENGINE=kafka", name)
			}
			continue
		}
		got = append(got, name)
		if *engine != "kafka" {
			t.Errorf("%s: STREAM_ENGINE=%s, want kafka", name, *engine)
		}
		if b := s.Environment["KAFKA_BROKERS"]; b == nil || *b != kafkaBrokers {
			t.Errorf("%s: KAFKA_BROKERS %v, want %s", name, b, kafkaBrokers)
		}
		if d, ok := s.DependsOn["kafka"]; !ok || d.Condition != types.ServiceConditionHealthy {
			t.Errorf("%s: does not wait for kafka to be healthy", name)
		}
		if _, ok := s.DependsOn["nats"]; ok {
			t.Errorf("%s: on Kafka but still waits for nats", name)
		}
		for k := range s.Environment {
			if strings.HasPrefix(k, "NATS_") {
				t.Errorf("%s: on Kafka but still has %s", name, k)
			}
		}
	}
	if slices.Sort(got); !slices.Equal(got, slices.Sorted(slices.Values(want))) {
		t.Errorf("STREAM_ENGINE=kafka on %v, want compose.yaml's NATS clients %v", got, slices.Sorted(slices.Values(want)))
	}

	if _, ok := p.Services["nats"]; !ok {
		t.Error("nats does not run with the overlay: the console's stream tools need it")
	}
	op := p.Services["web"].Environment["WEB_CONSOLE_NATS_PASSWORD"]
	if op == nil || *op != testSecrets["NATS_OPERATOR_PASSWORD"] {
		t.Errorf("web: WEB_CONSOLE_NATS_PASSWORD %v, want the operator's", op)
	}
}

// TestKafkaIsASingleKRaftNode: the kafka service is apache/kafka in
// KRaft combined mode (node 1, broker and controller, its own single
// voter), advertises PLAINTEXT://kafka:9092 (what the clients are given
// and what the healthcheck asks), keeps its log directory in a named
// volume of its own, gives every internal topic and every default one
// replica (a single broker cannot place more), creates no topic by
// itself (the services' EnsureTopic does), and is not published to the
// host.
func TestKafkaIsASingleKRaftNode(t *testing.T) {
	t.Parallel()
	p := loadKafka(t)
	k, ok := p.Services["kafka"]
	if !ok {
		t.Fatalf("%s --profile kafka: no kafka service", kafkaOverlay)
	}
	if !strings.HasPrefix(k.Image, "apache/kafka:") {
		t.Errorf("kafka: image %s, want the Apache Kafka project's apache/kafka", k.Image)
	}
	env := map[string]string{}
	for key, v := range k.Environment {
		if v != nil {
			env[key] = *v
		}
	}
	for key, want := range map[string]string{
		"KAFKA_NODE_ID":                   "1",
		"KAFKA_CONTROLLER_QUORUM_VOTERS":  "1@kafka:9093",
		"KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
		"KAFKA_ADVERTISED_LISTENERS":      "PLAINTEXT://" + kafkaBrokers,
		// One replica where Kafka's default is 3: without these a single
		// broker never creates __consumer_offsets, and no group gets a
		// coordinator.
		"KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR":         "1",
		"KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
		"KAFKA_TRANSACTION_STATE_LOG_MIN_ISR":            "1",
		"KAFKA_AUTO_CREATE_TOPICS_ENABLE":                "false",
	} {
		if env[key] != want {
			t.Errorf("kafka: %s=%q, want %q", key, env[key], want)
		}
	}
	if roles := strings.Split(env["KAFKA_PROCESS_ROLES"], ","); !slices.Equal(slices.Sorted(slices.Values(roles)), []string{"broker", "controller"}) {
		t.Errorf("kafka: KAFKA_PROCESS_ROLES=%q, want broker,controller (combined mode)", env["KAFKA_PROCESS_ROLES"])
	}
	listeners := strings.Split(env["KAFKA_LISTENERS"], ",")
	for _, want := range []string{"PLAINTEXT://:9092", "CONTROLLER://:9093"} {
		if !slices.Contains(listeners, want) {
			t.Errorf("kafka: KAFKA_LISTENERS=%q, want %s among them", env["KAFKA_LISTENERS"], want)
		}
	}
	for key, v := range env {
		if (strings.HasSuffix(key, "_REPLICATION_FACTOR") || strings.HasSuffix(key, "_MIN_ISR") || key == "KAFKA_MIN_INSYNC_REPLICAS") && v != "1" {
			t.Errorf("kafka: %s=%s on a single broker, want 1", key, v)
		}
	}
	// The image formats the log directory with it on the first start.
	if id, err := base64.RawURLEncoding.DecodeString(env["CLUSTER_ID"]); err != nil || len(id) != 16 {
		t.Errorf("kafka: CLUSTER_ID %q: want a 16-byte UUID in URL-safe base64 without padding (22 characters)", env["CLUSTER_ID"])
	}

	logDir := env["KAFKA_LOG_DIRS"]
	var store string
	for _, v := range k.Volumes {
		if v.Type == types.VolumeTypeVolume && v.Target == logDir {
			store = v.Source
		}
	}
	if logDir == "" || store == "" {
		t.Errorf("kafka: KAFKA_LOG_DIRS %q is not a named volume's mount point: %+v", logDir, k.Volumes)
	}
	for name, s := range p.Services {
		for _, v := range s.Volumes {
			if name != "kafka" && v.Type == types.VolumeTypeVolume && v.Source == store {
				t.Errorf("%s mounts kafka's log volume %s", name, store)
			}
		}
	}

	if k.HealthCheck == nil || !slices.Contains(k.HealthCheck.Test, kafkaBrokers) ||
		!slices.ContainsFunc(k.HealthCheck.Test, func(a string) bool { return strings.HasPrefix(a, "/opt/kafka/bin/") }) {
		t.Errorf("kafka: healthcheck %+v: want a Kafka tool of /opt/kafka/bin asking %s", k.HealthCheck, kafkaBrokers)
	}
	if len(k.Ports) > 0 {
		t.Errorf("kafka: publishes %+v; a sandbox broker without authentication stays on the internal network", k.Ports)
	}
	if k.NetworkMode != "" {
		t.Errorf("kafka: network_mode %q, want the project's network", k.NetworkMode)
	}
}

// TestKafkaOverlayPublishesNothingMore: the same ports, on the same host
// addresses, as compose.yaml alone.
func TestKafkaOverlayPublishesNothingMore(t *testing.T) {
	t.Parallel()
	published := func(p *types.Project) map[string]string {
		out := map[string]string{}
		for name, s := range p.Services {
			for _, port := range s.Ports {
				out[name+"/"+port.Published] = port.HostIP
			}
		}
		return out
	}
	if got, want := published(loadKafka(t)), published(load(t)); !maps.Equal(got, want) {
		t.Errorf("with %s published %v, want compose.yaml's %v", kafkaOverlay, got, want)
	}
}

// TestKafkaOverlayPointsTheConsoleAtKafka: under the overlay the
// storefront's console reads the Kafka dead-letter topics
// (WEB_CONSOLE_KAFKA_BROKERS, ADR 0046); without it, nothing sets it.
func TestKafkaOverlayPointsTheConsoleAtKafka(t *testing.T) {
	t.Parallel()
	web, err := loadKafka(t).GetService("web")
	if err != nil {
		t.Fatal(err)
	}
	if v := web.Environment["WEB_CONSOLE_KAFKA_BROKERS"]; v == nil || *v != "kafka:9092" {
		t.Errorf("web under the Kafka overlay: WEB_CONSOLE_KAFKA_BROKERS %v, want kafka:9092", v)
	}
	plain, err := load(t).GetService("web")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := plain.Environment["WEB_CONSOLE_KAFKA_BROKERS"]; ok {
		t.Error("web without the overlay has WEB_CONSOLE_KAFKA_BROKERS")
	}
}
