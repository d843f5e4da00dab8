vcl 4.1;
# The CDN in front of catalog (Varnish 7 + varnish-modules' xkey).
#
# It honours catalog's headers: Cache-Control s-maxage sets the TTL,
# stale-while-revalidate the grace, and stale-if-error (1 day) the extra
# grace used while catalog is unhealthy. Responses marked private or
# no-store are never stored. Purges are by surrogate key (xkey) and need
# the shared secret (purge_auth; ADR 0037). The admin API and /metrics are
# never forwarded, whatever the path's spelling (deny_internal; ADR 0023).

import blob;
import std;
import xkey;

backend catalog {
    .host = "catalog";
    .port = "8081";
    .connect_timeout = 1s;
    .first_byte_timeout = 5s;
    .probe = {
        .url = "/healthz";
        .interval = 1s;
        .timeout = 500ms;
        .window = 3;
        .threshold = 2;
        .initial = 2;
    }
}

sub vcl_recv {
    call deny_internal;
    if (req.method == "PURGE") {
        call purge_auth;
        if (!req.http.xkey-purge) {
            return (synth(400, "PURGE needs an xkey-purge header"));
        }
        set req.http.n-gone = xkey.purge(req.http.xkey-purge);
        return (synth(200, "Purged " + req.http.n-gone));
    }

    unset req.http.X-Purge-Secret;

    # One cache entry per resource: drop tracking parameters, sort the rest.
    set req.url = regsuball(req.url, "(?i)([?&])(utm_[a-z]+|gclid|fbclid|mc_eid)=[^&]*", "\1");
    set req.url = regsuball(req.url, "[?&]+$", "");
    set req.url = regsub(req.url, "\?&+", "?");
    set req.url = std.querysort(req.url);

    if (req.method != "GET" && req.method != "HEAD") {
        return (pass);
    }
    # Personal requests are never served from or stored in the cache.
    if (req.http.Authorization || req.http.Cookie) {
        return (pass);
    }
    # Healthy origin: serve stale only for the stale-while-revalidate
    # window while refreshing. Sick origin: up to stale-if-error.
    if (std.healthy(req.backend_hint)) {
        set req.grace = 30s;
    }
    return (hash);
}

# A PURGE must carry the secret of the environment variable
# CDN_PURGE_SECRET (read at each request, so the variable must be in
# varnishd's environment) in its X-Purge-Secret header; otherwise it is
# refused with 403, and so is every PURGE when the variable is unset or
# shorter than 16 characters. The address a PURGE comes from proves
# nothing: behind Docker's port publishing or any proxy, every client is a
# private address. The header never reaches the origin (PURGE is answered
# here) and is dropped from every other request.
sub purge_auth {
    if (std.getenv("CDN_PURGE_SECRET") !~ "^.{16,}$" ||
        req.http.X-Purge-Secret != std.getenv("CDN_PURGE_SECRET")) {
        return (synth(403, "Forbidden"));
    }
}

# The admin API (/v1/admin...) and /metrics live on the services' admin
# listeners, which no CDN backend points at (ADR 0023). They are answered
# 404 here too, for every method and without asking the origin, so that an
# origin that still served them (a misconfigured ADMIN_ADDR, an old build)
# is not reachable through the CDN. The path is compared as an origin would
# route it: an absolute-form URL reduced to its path, the query dropped,
# percent-escapes decoded once (%2F, %61, ...), backslashes read as
# slashes, runs of slashes collapsed, "." and ".." segments resolved (three
# levels deep; deeper ones get the origin's redirect to the clean path,
# which comes back through this rule), lower case; then a prefix match.
sub deny_internal {
    set req.http.x-sf-path = regsub(req.url, "^[a-zA-Z][a-zA-Z0-9+.-]*://[^/]*", "");
    set req.http.x-sf-path = regsub(req.http.x-sf-path, "[?#].*$", "");
    set req.http.x-sf-path = regsuball(req.http.x-sf-path, "%00", "");
    # Decode only well-formed escapes: a stray % is the origin's 400.
    if (req.http.x-sf-path ~ "%[0-9a-fA-F]{2}" && req.http.x-sf-path !~ "%(?![0-9a-fA-F]{2})") {
        set req.http.x-sf-path = blob.transcode(decoding=URL, encoded=req.http.x-sf-path);
    }
    set req.http.x-sf-path = std.tolower(regsuball(req.http.x-sf-path, "\\", "/"));
    set req.http.x-sf-path = regsuball(req.http.x-sf-path, "/{2,}", "/");
    set req.http.x-sf-path = regsuball(req.http.x-sf-path, "/\.(?=/|$)", "");
    set req.http.x-sf-path = regsuball(req.http.x-sf-path, "/[^/]+/\.\.(?=/|$)", "");
    set req.http.x-sf-path = regsuball(req.http.x-sf-path, "/[^/]+/\.\.(?=/|$)", "");
    set req.http.x-sf-path = regsuball(req.http.x-sf-path, "/[^/]+/\.\.(?=/|$)", "");
    set req.http.x-sf-path = regsub(req.http.x-sf-path, "^(/\.\.)+(?=/|$)", "");
    if (req.http.x-sf-path ~ "^/*(v1/admin|metrics)") {
        unset req.http.x-sf-path;
        return (synth(404, "Not Found"));
    }
    unset req.http.x-sf-path;
}

sub vcl_synth {
    if (resp.status == 404) {
        set resp.http.Content-Type = "application/problem+json";
        set resp.http.Cache-Control = "private, no-store";
        set resp.body = {"{"type":"https://shopfloor.dev/problems/not-found","title":"Not Found","status":404,"detail":"no route for this path" }"};
        return (deliver);
    }
}

sub vcl_backend_response {
    # Keep objects past their TTL so they can be served when catalog fails
    # (stale-if-error=86400 in catalog's Cache-Control).
    if (beresp.http.Cache-Control ~ "stale-if-error=") {
        set beresp.grace = std.duration(regsub(beresp.http.Cache-Control, ".*stale-if-error=([0-9]+).*", "\1") + "s", 0s);
    }
    # A failed background refresh must not replace the stale copy.
    if (beresp.status >= 500 && bereq.is_bgfetch) {
        return (abandon);
    }
    # Errors other than a briefly cached 404 are never stored.
    if (beresp.status >= 400 && beresp.status != 404) {
        set beresp.uncacheable = true;
        set beresp.ttl = 0s;
        return (deliver);
    }
    if (beresp.http.Cache-Control ~ "(private|no-store)") {
        set beresp.uncacheable = true;
        set beresp.ttl = 0s;
    }
    return (deliver);
}

sub vcl_backend_error {
    if (bereq.is_bgfetch) {
        return (abandon);
    }
}

sub vcl_deliver {
    if (obj.hits > 0) {
        set resp.http.X-Cache = "HIT";
    } else {
        set resp.http.X-Cache = "MISS";
    }
    # Surrogate keys are for this cache, not for clients.
    unset resp.http.xkey;
    unset resp.http.Surrogate-Key;
}
