package idp

import (
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/shopfloor/shopfloor/services/identity/identityapi"
)

const loginPath = "/login"

// login is the sign-in form: GET shows it for an auth request, POST checks
// the password and sends the browser back to the library's authorize
// callback, which redirects to the client with a code.
type login struct {
	storage  *Storage
	issuer   string
	callback string // absolute URL of the authorize callback
	log      *slog.Logger
	guard    *signInGuard
}

type loginPage struct {
	Action        string
	AuthRequestID string
	ClientID      string
	Users         []loginUser
	Username      string
	Error         string
}

type loginUser struct {
	Username string
	Name     string
	Roles    string
}

var loginTemplate = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · shopfloor sandbox</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 28rem; margin: 3rem auto; padding: 0 1rem; color: #222; }
table { border-collapse: collapse; width: 100%; margin: 1rem 0; }
th, td { text-align: left; padding: .3rem .5rem; border-bottom: 1px solid #ddd; }
label { display: block; margin-top: .8rem; }
input { width: 100%; padding: .4rem; box-sizing: border-box; }
button { margin-top: 1rem; padding: .5rem 1.2rem; }
.error { color: #a00; font-weight: bold; }
.note { color: #666; font-size: .9rem; }
</style>
</head>
<body>
<h1>Sign in</h1>
{{if .ClientID}}<p>to <strong>{{.ClientID}}</strong></p>{{end}}
{{if .Error}}<p class="error" role="alert">{{.Error}}</p>{{end}}
{{if .AuthRequestID}}
<form method="post" action="{{.Action}}">
<input type="hidden" name="authRequestID" value="{{.AuthRequestID}}">
<label for="username">User name</label>
<input id="username" name="username" type="text" list="demo-users" autocomplete="username" value="{{.Username}}" required autofocus>
<datalist id="demo-users">{{range .Users}}<option value="{{.Username}}">{{end}}</datalist>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Sign in</button>
</form>
{{end}}
<h2>Demo users</h2>
<table>
<tr><th>user name</th><th>name</th><th>roles</th></tr>
{{range .Users}}<tr><td>{{.Username}}</td><td>{{.Name}}</td><td>{{.Roles}}</td></tr>
{{end}}</table>
<p class="note">This is the shopfloor sandbox's identity provider. Every demo user signs in with the
sandbox's demo password: <code>make run</code> keeps it in <code>.run/identity.env</code>, compose in
<code>deploy/compose/.env</code> (<code>SHOPFLOOR_DEMO_PASSWORD</code>). Or skip the page:
<code>make -s token USER=ada</code>.</p>
</body>
</html>
`))

func (l *login) show(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("authRequestID")
	ar, err := l.storage.authRequestForLogin(id)
	if err != nil {
		l.render(w, r, http.StatusBadRequest, loginPage{Error: err.Error()})
		return
	}
	l.render(w, r, http.StatusOK, loginPage{AuthRequestID: id, ClientID: ar.clientID})
}

func (l *login) submit(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		l.render(w, r, http.StatusBadRequest, loginPage{Error: "the form could not be read; start again from your application"})
		return
	}
	id := r.PostForm.Get("authRequestID")
	username := strings.TrimSpace(r.PostForm.Get("username"))
	if wait := l.guard.wait(username); wait > 0 {
		secs := int64(math.Ceil(wait.Seconds()))
		l.log.WarnContext(r.Context(), "sign-in refused: too many wrong passwords for this user name", "retry_after_seconds", secs)
		w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
		ar, _ := l.storage.authRequestForLogin(id)
		l.render(w, r, http.StatusTooManyRequests, loginPage{AuthRequestID: id, ClientID: ar.clientID, Username: username,
			Error: fmt.Sprintf("too many wrong passwords for this user name: try again in %d seconds", secs)})
		return
	}
	err := l.storage.CompleteLogin(id, username, r.PostForm.Get("password"))
	switch {
	case err == nil:
		l.log.InfoContext(r.Context(), "signed in", "user", username)
		http.Redirect(w, r, l.callback+"?"+url.Values{"id": {id}}.Encode(), http.StatusSeeOther)
	case errors.Is(err, ErrBadCredentials):
		l.guard.failed(username)
		l.log.InfoContext(r.Context(), "sign-in refused")
		ar, _ := l.storage.authRequestForLogin(id)
		l.render(w, r, http.StatusOK, loginPage{AuthRequestID: id, ClientID: ar.clientID, Username: username, Error: err.Error()})
	default:
		l.render(w, r, http.StatusBadRequest, loginPage{Error: err.Error()})
	}
}

func (l *login) render(w http.ResponseWriter, r *http.Request, status int, page loginPage) {
	page.Action = l.issuer + loginPath
	for _, u := range identityapi.DemoUsers() {
		page.Users = append(page.Users, loginUser{Username: u.Username, Name: u.Name, Roles: strings.Join(u.Roles, ", ")})
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
	h.Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(status)
	if err := loginTemplate.Execute(w, page); err != nil {
		l.log.WarnContext(r.Context(), "render sign-in page", "err", err)
	}
}
