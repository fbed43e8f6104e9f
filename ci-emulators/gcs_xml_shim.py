#!/usr/bin/env python3
"""GCS XML API -> S3 forwarding shim, for tests only (python3 stdlib, no dependencies).

object_store's GCS client only speaks the GCS *XML* API, which is S3-shaped, and no GCS
emulator on the package registries implements it. This server listens on a local port,
accepts the requests object_store 0.14.2 sends (src/gcp/client.rs), rewrites the few GCS
specifics into their S3 equivalents, signs the request with AWS SigV4 and forwards it to an
S3 server (SeaweedFS in our CI). Responses are passed back with S3 headers renamed.

Mapping (request):
  path /{bucket}/{key}           decoded, re-encoded the S3 way ("/" kept), then signed
  x-goog-meta-*                  -> x-amz-meta-*
  x-goog-copy-source: b/k        -> x-amz-copy-source
  x-goog-if-generation-match: 0  -> If-None-Match: *       (PutMode::Create, copy create-only)
  x-goog-if-generation-match: G  -> If-Match: "G"          (PutMode::Update; G is our fake generation)
  ?generation=G (GET/HEAD)       -> If-Match: "G", and 412 -> 404 (an unversioned bucket has no
                                    other generation)
  other x-goog-* (storage class) -> dropped; Authorization (bearer) -> replaced by SigV4
  list (?list-type=2, prefix, delimiter, start-after, continuation-token, max-keys) and XML
  multipart (?uploads, ?partNumber&uploadId, complete, abort) are already S3 and pass as is.
Mapping (response):
  x-amz-meta-* -> x-goog-meta-*; ETag also as x-goog-generation (quotes stripped), which is the
  "version" object_store's GCS client reads; for CompleteMultipartUpload the ETag of the XML body.

Bodies are streamed in both directions (payload signed as UNSIGNED-PAYLOAD), except chunked
request bodies and responses without Content-Length (XML answers), which are buffered.
Not emulated: numeric generations/metagenerations, GCS error bodies, GCS-only headers.

Usage: gcs_xml_shim.py --listen-port 4443 --backend http://127.0.0.1:8333 \
                       --access-key test --secret-key test [--region us-east-1] [--quiet]
"""
import argparse
import datetime
import hashlib
import hmac
import http.client
import http.server
import sys
import urllib.parse
import xml.etree.ElementTree as ET

CHUNK = 1 << 20  # streaming block size

# Request headers forwarded unchanged (lower case); everything else is mapped or dropped.
PASS_REQ = {
    "content-type", "content-length", "content-md5", "cache-control", "content-disposition",
    "content-encoding", "content-language", "expires", "range", "if-match", "if-none-match",
    "if-modified-since", "if-unmodified-since",
}
# Response headers passed back unchanged.
PASS_RESP = {
    "content-type", "content-length", "content-range", "etag", "last-modified", "accept-ranges",
    "cache-control", "content-disposition", "content-encoding", "content-language", "expires",
    "x-amz-request-id",
}


def s3_quote(s, keep_slash):
    """URI-encode as SigV4 wants: everything but A-Z a-z 0-9 - _ . ~ (and "/" in paths)."""
    return urllib.parse.quote(s, safe="/" if keep_slash else "")


def quote_etag(v):
    return v if v.startswith('"') else '"%s"' % v


class Signer:
    """AWS Signature Version 4 for S3, header-based, with an unsigned payload."""

    def __init__(self, access_key, secret_key, region):
        self.access_key, self.secret_key, self.region = access_key, secret_key, region

    def sign(self, method, path, query, headers):
        """path: encoded URI; query: encoded canonical query; headers: dict (lower-case keys),
        completed in place with x-amz-date, x-amz-content-sha256 and Authorization."""
        now = datetime.datetime.now(datetime.timezone.utc)
        amz_date = now.strftime("%Y%m%dT%H%M%SZ")
        day = amz_date[:8]
        headers["x-amz-date"] = amz_date
        headers["x-amz-content-sha256"] = "UNSIGNED-PAYLOAD"
        signed = sorted(k for k in headers if k == "host" or k.startswith("x-amz-"))
        canonical_headers = "".join(
            "%s:%s\n" % (k, " ".join(headers[k].split())) for k in signed)
        canonical_request = "\n".join([
            method, path, query, canonical_headers, ";".join(signed), "UNSIGNED-PAYLOAD"])
        scope = "%s/%s/s3/aws4_request" % (day, self.region)
        string_to_sign = "\n".join([
            "AWS4-HMAC-SHA256", amz_date, scope,
            hashlib.sha256(canonical_request.encode()).hexdigest()])
        key = ("AWS4" + self.secret_key).encode()
        for part in (day, self.region, "s3", "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        signature = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
        headers["authorization"] = (
            "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s"
            % (self.access_key, scope, ";".join(signed), signature))


class ShimHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: object_store reuses connections
    server_version = "gcs-xml-shim"
    cfg = None  # argparse namespace, set in main()
    signer = None

    def do_GET(self):  # every verb object_store uses goes through the same translation
        self.forward()

    do_PUT = do_POST = do_DELETE = do_HEAD = do_GET

    def log_message(self, fmt, *args):
        if not self.cfg.quiet:
            sys.stderr.write("%s %s\n" % (self.log_date_time_string(), fmt % args))

    # -- request side -------------------------------------------------------------------
    def translate(self):
        """Return (encoded path, encoded query, S3 headers, generation-read flag)."""
        split = urllib.parse.urlsplit(self.path)
        path = s3_quote(urllib.parse.unquote(split.path) or "/", keep_slash=True)
        headers, generation = {}, None
        params = []
        for k, v in urllib.parse.parse_qsl(split.query, keep_blank_values=True):
            if k == "generation":  # read of a given generation: must be the current one
                generation = v
            else:
                params.append((s3_quote(k, False), s3_quote(v, False)))
        query = "&".join("%s=%s" % kv for kv in sorted(params))
        for name, value in self.headers.items():
            k = name.lower()
            if k in PASS_REQ:
                headers[k] = value
            elif k.startswith("x-goog-meta-"):
                headers["x-amz-meta-" + k[len("x-goog-meta-"):]] = value
            elif k == "x-goog-copy-source":
                src = urllib.parse.unquote(value).lstrip("/")
                headers["x-amz-copy-source"] = s3_quote(src, keep_slash=True)
            elif k == "x-goog-if-generation-match":
                if value.strip() == "0":
                    headers["if-none-match"] = "*"
                else:
                    headers["if-match"] = quote_etag(value.strip())
        if generation is not None and self.command in ("GET", "HEAD"):
            headers["if-match"] = quote_etag(generation)
        return path, query, headers, generation is not None

    def read_chunked(self):
        """De-chunk a Transfer-Encoding: chunked request body (buffered)."""
        out = bytearray()
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return bytes(out)
            out += self.rfile.read(size)
            self.rfile.readline()  # CRLF after each chunk

    # -- the forwarding itself ----------------------------------------------------------
    def forward(self):
        path, query, headers, generation_read = self.translate()
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        body = self.read_chunked() if chunked else None
        length = len(body) if chunked else int(self.headers.get("Content-Length") or 0)
        if length or self.command in ("PUT", "POST"):
            headers["content-length"] = str(length)
        headers["host"] = self.cfg.backend_netloc
        self.signer.sign(self.command, path, query, headers)

        conn = http.client.HTTPConnection(self.cfg.backend_host, self.cfg.backend_port,
                                          timeout=300)
        send_failed = False
        try:
            conn.putrequest(self.command, path + ("?" + query if query else ""),
                            skip_host=True, skip_accept_encoding=True)
            for k, v in headers.items():
                conn.putheader(k, v)
            conn.endheaders()
        except OSError as e:
            send_failed = True
            self.log_message("backend connect failed: %s", e)
        # Stream the request body. If the backend answers early (e.g. 412 before reading
        # the body) and closes, keep draining the client so its connection stays usable.
        if body is not None:
            chunks = [body]
        else:
            chunks = self.body_chunks(length)
        for chunk in chunks:
            if not send_failed:
                try:
                    conn.send(chunk)
                except OSError:
                    send_failed = True
        try:
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            return self.fail(502, "backend error: %s" % e)
        try:
            self.relay(resp, generation_read)
        finally:
            conn.close()

    def body_chunks(self, remaining):
        while remaining > 0:
            chunk = self.rfile.read(min(CHUNK, remaining))
            if not chunk:
                raise ConnectionError("client closed before sending the whole body")
            remaining -= len(chunk)
            yield chunk

    def relay(self, resp, generation_read):
        status = resp.status
        if generation_read and status == 412:
            status = 404  # unversioned bucket: a non-current generation does not exist
        out = []
        etag = None
        for name, value in resp.getheaders():
            k = name.lower()
            if k in PASS_RESP:
                out.append((name, value))
            elif k.startswith("x-amz-meta-"):
                out.append(("x-goog-meta-" + k[len("x-amz-meta-"):], value))
            if k == "etag":
                etag = value
        complete = self.command == "POST" and "uploadId=" in self.path
        streamed = (self.command == "HEAD" or status in (204, 304)
                    or (resp.getheader("Content-Length") is not None and not complete))
        body = b""
        if not streamed:  # XML answers without a length, multipart completion: buffer
            body = resp.read()
            out = [(n, v) for n, v in out if n.lower() != "content-length"]
            out.append(("Content-Length", str(len(body))))
            if complete and status == 200:
                etag = etag or self.xml_etag(body)  # CompleteMultipartUpload result
        if etag:
            out.append(("x-goog-generation", etag.strip('"')))
        self.send_response(status)
        for name, value in out:
            self.send_header(name, value)
        self.end_headers()
        if self.command == "HEAD" or status in (204, 304):
            return
        if body:
            self.wfile.write(body)
        elif streamed:
            while True:
                chunk = resp.read(CHUNK)
                if not chunk:
                    break
                self.wfile.write(chunk)

    @staticmethod
    def xml_etag(body):
        try:
            for el in ET.fromstring(body).iter():
                if el.tag.rsplit("}", 1)[-1] == "ETag" and el.text:
                    return el.text
        except ET.ParseError:
            pass
        return None

    def fail(self, status, message):
        data = message.encode()
        self.close_connection = True
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # many concurrent object_store connections

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return  # the client went away (idle keep-alive closed, dropped download): fine
        super().handle_error(request, client_address)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--listen-host", default="127.0.0.1")
    p.add_argument("--listen-port", type=int, default=4443)
    p.add_argument("--backend", default="http://127.0.0.1:8333", help="S3 endpoint (http only)")
    p.add_argument("--access-key", default="test")
    p.add_argument("--secret-key", default="test")
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--quiet", action="store_true", help="do not log every request")
    cfg = p.parse_args()
    backend = urllib.parse.urlsplit(cfg.backend)
    if backend.scheme != "http" or not backend.hostname:
        p.error("--backend must be http://host[:port]")
    cfg.backend_host, cfg.backend_port = backend.hostname, backend.port or 80
    cfg.backend_netloc = backend.netloc
    ShimHandler.cfg = cfg
    ShimHandler.signer = Signer(cfg.access_key, cfg.secret_key, cfg.region)
    server = Server((cfg.listen_host, cfg.listen_port), ShimHandler)
    sys.stderr.write("gcs-xml-shim on %s:%d -> %s\n" % (cfg.listen_host, cfg.listen_port,
                                                        cfg.backend))
    sys.stderr.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
