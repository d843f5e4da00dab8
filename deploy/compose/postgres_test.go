package compose_test

import (
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
)

// dbPasswordRE matches a database role's password variable:
// <SERVICE>_DB_OWNER_PASSWORD or <SERVICE>_DB_APP_PASSWORD (ADR 0040).
var dbPasswordRE = regexp.MustCompile(`^([A-Z0-9_]+)_DB_(OWNER|APP)_PASSWORD$`)

// databases are the services with a database: those whose role
// passwords are among the test secrets.
func databases() []string {
	var out []string
	for v := range testSecrets {
		if m := dbPasswordRE.FindStringSubmatch(v); m != nil && m[2] == "OWNER" {
			out = append(out, strings.ReplaceAll(strings.ToLower(m[1]), "_", "-"))
		}
	}
	slices.Sort(out)
	return out
}

// TestNoServiceRunsAsTheSuperuser: in compose.yaml and with the chaos
// overlay, every DATABASE_URL logs in as a service role of its own
// service's database, never as postgres: <svc>_owner in the migrate job,
// <svc>_app in every other process (ADR 0040). The postgres-roles job,
// the only one with the superuser's password, makes every database and
// its roles before any migrate job starts.
func TestNoServiceRunsAsTheSuperuser(t *testing.T) {
	t.Parallel()
	dbs := databases()
	if len(dbs) < 5 {
		t.Fatalf("databases %v: want at least the five services'", dbs)
	}
	for name, p := range map[string]*types.Project{"compose.yaml": load(t), "with " + overlay: loadChaos(t)} {
		users := map[string]int{}
		for sname, s := range p.Services {
			raw, ok := s.Environment["DATABASE_URL"]
			if !ok || raw == nil {
				continue
			}
			u, err := url.Parse(*raw)
			if err != nil {
				t.Errorf("%s: %s: DATABASE_URL does not parse", name, sname)
				continue
			}
			svc, _, _ := strings.Cut(sname, "-")
			role := "_app"
			if sname == svc+"-migrate" {
				role = "_owner"
			}
			pw, _ := u.User.Password()
			wantPW := testSecrets[strings.ToUpper(svc)+"_DB"+strings.ToUpper(role)+"_PASSWORD"]
			if user := u.User.Username(); user != svc+role || pw != wantPW || u.Path != "/"+svc {
				t.Errorf("%s: %s connects as %q (password %q) to %s; want %s%s with its password to /%s", name, sname, user, pw, u.Path, svc, role, svc)
			}
			users[u.User.Username()]++
			if sname == svc+"-migrate" {
				if d, ok := s.DependsOn["postgres-roles"]; !ok || d.Condition != types.ServiceConditionCompletedSuccessfully {
					t.Errorf("%s: %s does not wait for postgres-roles to complete", name, sname)
				}
			}
		}
		for _, db := range dbs {
			if users[db+"_owner"] != 1 || users[db+"_app"] == 0 {
				t.Errorf("%s: %s: %d processes as %s_owner (want 1: its migrate job), %d as %s_app (want some)", name, db, users[db+"_owner"], db, users[db+"_app"], db)
			}
		}
		roles, ok := p.Services["postgres-roles"]
		if !ok {
			t.Fatalf("%s: no postgres-roles job", name)
		}
		if got := roles.Command; len(got) == 0 || got[0] != "pgroles" || !slices.Equal(slices.Sorted(slices.Values(got[1:])), dbs) {
			t.Errorf("%s: postgres-roles runs %v; want pgroles with every database: %v", name, got, dbs)
		}
		for _, db := range dbs {
			for _, r := range []string{"OWNER", "APP"} {
				v := strings.ToUpper(strings.ReplaceAll(db, "-", "_")) + "_DB_" + r + "_PASSWORD"
				if got := roles.Environment[v]; got == nil || *got != testSecrets[v] {
					t.Errorf("%s: postgres-roles has no %s", name, v)
				}
			}
		}
		admin := roles.Environment["PGROLES_ADMIN_URL"]
		if admin == nil || !strings.HasPrefix(*admin, "postgres://postgres:"+testSecrets["POSTGRES_PASSWORD"]+"@postgres:5432/") {
			t.Errorf("%s: postgres-roles' PGROLES_ADMIN_URL is not the superuser's on postgres:5432", name)
		}
		if d, ok := roles.DependsOn["postgres"]; !ok || d.Condition != types.ServiceConditionHealthy {
			t.Errorf("%s: postgres-roles does not wait for postgres to be healthy", name)
		}
		if r := p.Services["postgres"]; slices.ContainsFunc(r.Volumes, func(v types.ServiceVolumeConfig) bool {
			return strings.Contains(v.Target, "docker-entrypoint-initdb.d")
		}) {
			t.Errorf("%s: postgres still runs init scripts; postgres-roles makes the databases", name)
		}
	}
}
