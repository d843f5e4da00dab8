vcl 4.1;
# The CDN in front of catalog (Varnish 7 + varnish-modules' xkey).
#
# It honours catalog's headers: Cache-Control s-maxage sets the TTL,
# stale-while-revalidate the grace, and stale-if-error (1 day) the extra
# grace used while catalog is unhealthy. Responses marked private or
# no-store are never stored. Purges are by surrogate key (xkey), from the
# internal network only.

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

acl purgers {
    "127.0.0.1";
    "::1";
    "10.0.0.0"/8;
    "172.16.0.0"/12;
    "192.168.0.0"/16;
}

sub vcl_recv {
    if (req.method == "PURGE") {
        if (client.ip !~ purgers) {
            return (synth(403, "Forbidden"));
        }
        if (!req.http.xkey-purge) {
            return (synth(400, "PURGE needs an xkey-purge header"));
        }
        set req.http.n-gone = xkey.purge(req.http.xkey-purge);
        return (synth(200, "Purged " + req.http.n-gone));
    }

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
    if (req.url ~ "^/v1/admin") {
        return (pass);
    }
    # Healthy origin: serve stale only for the stale-while-revalidate
    # window while refreshing. Sick origin: up to stale-if-error.
    if (std.healthy(req.backend_hint)) {
        set req.grace = 30s;
    }
    return (hash);
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
