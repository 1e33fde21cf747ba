// The importer: a POSIX shell script the image import job pod runs (the launcher
// image: sh, curl, tar, sha256sum, qemu-img, busybox). It streams the source into a
// work directory beside the target on the domain, verifies the checksum (HTTP) or the
// layer digest (OCI), refuses images that name other files (a qcow2 backing file or
// external data file, a VMDK descriptor), detects the format with qemu-img, converts
// only when the stored format differs (or checks a qcow2 that is kept as is) and
// renames the result into place. Failures end with one JSON line
// `{"op":"import","failed":true,"reason":…}` in the termination log and no file at the
// target: the work directory goes, except after a network failure, when the download
// stays for an HTTP Range resume. Progress is a small JSON file served read-only by
// busybox httpd on the pod's progress port.

/** The port the importer serves its progress on (read-only, one static file). */
export const IMPORT_PROGRESS_PORT = 8470;
/** The path of the progress document on that port. */
export const IMPORT_PROGRESS_PATH = '/progress';
/** The port an upload import receives the image on (busybox httpd, a CGI behind Basic auth with the job's token). */
export const IMPORT_UPLOAD_PORT = 8471;
/** The path the operator POSTs an upload to on that port. */
export const IMPORT_UPLOAD_PATH = '/cgi-bin/upload';
/** The Basic-auth user of the upload port (the password is the job's token). */
export const IMPORT_UPLOAD_USER = 'keyvirt';

// The CGI that receives an upload (ADR 0097, ADR 0109), in parts: a POST with
// `?offset=N&size=T` appends its body at byte N of an image of T bytes; a POST without a
// query is the whole image at once (offset 0, size its Content-Length). The file on the
// domain only ever holds whole parts: a part cut short is cut off again (truncate), so
// an interrupted upload resumes at the last whole part; a part at another offset, a
// second sender at once, another size or bytes past the size are refused and harm
// nothing. A part without a body answers where the upload stands. busybox httpd checks
// the Basic-auth token before it runs it. Its first lines (work, dl) are written by the script.
const UPLOAD_CGI = `answer() { printf 'Status: %s\\r\\nContent-Type: text/plain\\r\\n\\r\\n%s\\n' "$1" "$2"; exit 0; }
release() { rmdir "$work/receiving" 2>/dev/null; answer "$1" "$2"; }
[ "$REQUEST_METHOD" = POST ] || answer '405 Method Not Allowed' 'POST the image'
len=\${CONTENT_LENGTH:-}
# busybox httpd leaves CONTENT_LENGTH unset for an empty body: a part without one asks where the upload stands.
[ -z "$len" ] && [ -n "\${QUERY_STRING:-}" ] && len=0
case "$len" in ''|*[!0-9]*) answer '411 Length Required' 'a Content-Length is required' ;; esac
if [ -n "\${QUERY_STRING:-}" ]; then
  offset=$(printf '%s' "$QUERY_STRING" | sed -n 's/^offset=\\([0-9]\\{1,15\\}\\)&size=\\([0-9]\\{1,15\\}\\)$/\\1/p')
  size=$(printf '%s' "$QUERY_STRING" | sed -n 's/^offset=\\([0-9]\\{1,15\\}\\)&size=\\([0-9]\\{1,15\\}\\)$/\\2/p')
  [ -n "$offset" ] && [ -n "$size" ] || answer '400 Bad Request' 'offset and size must be byte counts (?offset=N&size=T)'
else
  offset=0; size=$len
  [ "$len" -gt 0 ] || answer '400 Bad Request' 'the upload is empty'
fi
[ "$size" -gt 0 ] || answer '400 Bad Request' 'size: the image is empty'
[ -e "$work/received" ] && answer '409 Conflict' "this import has already received all $(cat "$work/total") bytes"
mkdir "$work/receiving" 2>/dev/null || answer '409 Conflict' 'another part of this upload is being received; retry when it is done'
have=$(stat -c %s "$dl" 2>/dev/null || echo 0)
[ "$have" = 0 ] && printf '%s' "$size" > "$work/total"
total=$(cat "$work/total")
[ "$total" = "$size" ] || release '409 Conflict' "size: the upload was begun for $total bytes, not $size"
[ "$offset" = "$have" ] || release '409 Conflict' "offset: the upload is at byte $have of $total, not $offset"
[ $((offset + len)) -le "$size" ] || release '400 Bad Request' "the part of $len bytes at byte $offset ends past the size $size"
head -c "$len" >> "$dl"
got=$(stat -c %s "$dl")
if [ "$got" != $((offset + len)) ]; then
  truncate -s "$offset" "$dl"
  release '400 Bad Request' "the part ended after $((got - offset)) of $len bytes; the upload is at byte $offset of $total"
fi
[ "$got" = "$total" ] && : > "$work/received"
release '200 OK' "the upload is at byte $got of $total"
`;

export const IMPORT_SCRIPT = `set -u
root="\${KEYVIRT_DOMAIN_ROOT:-/domain}"
log="\${KEYVIRT_RESULT_FILE:-/dev/termination-log}"
www="\${KEYVIRT_PROGRESS_DIR:-/tmp/progress}"
target="$root/$KEYVIRT_TARGET"
work="$root/$KEYVIRT_WORK"
dl="$work/source"
out="$work/converted"
total=0
stage=downloading
started=$(date +%s%3N)
clean() { [ "$1" = keep ] || rm -rf "$work"; }
fail() {
  msg=$(printf '%s' "$2" | tr -d '"\\\\' | tr '\\000-\\037' ' ' | head -c 1500)
  printf '{"op":"import","failed":true,"reason":"%s","message":"%s"}' "$1" "$msg" > "$log"
  echo "import failed: $1: $2" >&2
  [ -n "\${ticker:-}" ] && kill "$ticker" 2>/dev/null
  [ -n "\${server:-}" ] && kill "$server" 2>/dev/null
  [ -n "\${uploader:-}" ] && kill "$uploader" 2>/dev/null
  clean "\${3:-clean}"
  exit 1
}
tick() {
  while :; do
    b=$(stat -c %s "$dl" 2>/dev/null || echo 0)
    if [ -s "$work/total" ]; then total=$(cat "$work/total")
    elif [ -s "$work/headers" ]; then
      h=$(tr -d '\\r' < "$work/headers")
      t=$(printf '%s\\n' "$h" | sed -n 's/^[Cc]ontent-[Rr]ange: bytes [0-9]*-[0-9]*\\/\\([0-9]*\\)$/\\1/p' | tail -n 1)
      [ -n "$t" ] || t=$(printf '%s\\n' "$h" | sed -n 's/^[Cc]ontent-[Ll]ength: *\\([0-9]*\\)$/\\1/p' | tail -n 1)
      total=\${t:-0}
    fi
    printf '{"bytes":%s,"totalBytes":%s,"stage":"%s"}' "$b" "$total" "$(cat "$work/stage" 2>/dev/null || echo downloading)" > "$www/.p"
    mv -f "$www/.p" "$www/progress"
    sleep 1
  done
}
set_stage() { printf '%s' "$1" > "$work/stage"; }
# --- download: HTTP(S) ---
http_download() {
  url="$KEYVIRT_URL"
  resume=""
  [ -s "$dl" ] && resume="-C -"
  rm -f "$work/sum"
  if [ -n "\${KEYVIRT_HTTP_CREDENTIALS:-}" ]; then
    printf 'user = "%s"\\n' "$KEYVIRT_HTTP_CREDENTIALS" > "$www.curlrc"
  else
    : > "$www.curlrc"
  fi
  curl_opts="-K $www.curlrc --silent --show-error --location --max-redirs 5 --proto =http,https --proto-redir =http,https --connect-timeout 20 --speed-limit 1 --speed-time 120"
  if [ -n "\${KEYVIRT_SHA256:-}" ] && [ -z "$resume" ]; then
    rm -f "$work/fifo"; mkfifo "$work/fifo"
    sha256sum < "$work/fifo" > "$work/sum" &
    summer=$!
    # shellcheck disable=SC2086
    { curl $curl_opts -D "$work/headers" -o - "$url" 2>"$work/curl.err"; echo $? > "$work/curl.rc"; } | tee "$work/fifo" > "$dl"
    wait "$summer"
  else
    # shellcheck disable=SC2086
    curl $curl_opts $resume -D "$work/headers" -o "$dl" "$url" 2>"$work/curl.err"; echo $? > "$work/curl.rc"
  fi
  rc=$(cat "$work/curl.rc")
  code=$(tr -d '\\r' < "$work/headers" 2>/dev/null | sed -n 's/^HTTP\\/[0-9.]* \\([0-9][0-9][0-9]\\).*/\\1/p' | tail -n 1)
  case "$code" in
    404|410) fail SourceNotFound "$url: HTTP $code" ;;
    416) rm -f "$dl"; fail SourceUnreachable "$url: HTTP 416 on a resumed download; it restarts from the beginning" keep ;;
    2*|'') ;;
    *) fail SourceHttpError "$url: HTTP $code" ;;
  esac
  if [ "$rc" = 33 ]; then rm -f "$dl"; fail SourceUnreachable "$url does not resume downloads (no byte ranges); it restarts from the beginning" keep; fi
  [ "$rc" = 0 ] || fail SourceUnreachable "$url: $(head -c 500 "$work/curl.err")" keep
  if [ -n "\${KEYVIRT_SHA256:-}" ]; then
    if [ -s "$work/sum" ]; then sum=$(cut -d' ' -f1 "$work/sum"); else set_stage verifying; sum=$(sha256sum "$dl" | cut -d' ' -f1); fi
    [ "$sum" = "$KEYVIRT_SHA256" ] || fail ChecksumMismatch "sha256 of the download is $sum, expected $KEYVIRT_SHA256"
  fi
}
# --- download: OCI registry (containerDisk: the disk file under disk/ in a layer) ---
registry_get() {
  # shellcheck disable=SC2086
  curl --silent --show-error --location --max-redirs 3 --proto =http,https --connect-timeout 20 -w '%{http_code}' "$@" 2>"$work/curl.err"
}
oci_download() {
  base="$KEYVIRT_REGISTRY_SCHEME://$KEYVIRT_REGISTRY/v2/$KEYVIRT_REPOSITORY"
  accept="application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"
  code=$(registry_get -H "Accept: $accept" -o "$work/manifest" "$base/manifests/$KEYVIRT_OCI_REF") || fail RegistryError "$KEYVIRT_REGISTRY: $(head -c 500 "$work/curl.err")" keep
  case "$code" in 404) fail SourceNotFound "$KEYVIRT_REPOSITORY:$KEYVIRT_OCI_REF is not in $KEYVIRT_REGISTRY" ;; 200) ;; *) fail RegistryError "manifest: HTTP $code" ;; esac
  if grep -q '"manifests"' "$work/manifest"; then fail RegistryError "$KEYVIRT_OCI_REF is an image index: name a single-platform manifest by its digest"; fi
  { tr -d ' \\n\\r\\t' < "$work/manifest"; echo; } | sed 's/"layers":\\[/\\n/' | tail -n 1 | sed 's/\\].*//' | tr '{' '\\n' | sed -n 's/.*"mediaType":"\\([^"]*\\)".*"digest":"\\(sha256:[0-9a-f]\\{64\\}\\)".*"size":\\([0-9]*\\).*/\\1 \\2 \\3/p; s/.*"mediaType":"\\([^"]*\\)".*"size":\\([0-9]*\\).*"digest":"\\(sha256:[0-9a-f]\\{64\\}\\)".*/\\1 \\3 \\2/p' > "$work/layers"
  [ -s "$work/layers" ] || fail RegistryError "the manifest lists no layers"
  found=""
  # The last layer that carries disk/ wins, as in the image's file system.
  tac "$work/layers" > "$work/layers.rev"
  while read -r media digest size; do
    printf '%s' "$size" > "$work/total"
    rm -f "$dl"
    code=$(registry_get -o "$dl" "$base/blobs/$digest") || fail RegistryError "blob $digest: $(head -c 500 "$work/curl.err")" keep
    [ "$code" = 200 ] || fail RegistryError "blob $digest: HTTP $code"
    [ "sha256:$(sha256sum "$dl" | cut -d' ' -f1)" = "$digest" ] || fail ChecksumMismatch "layer $digest does not match its digest"
    case "$media" in *gzip) z=-z ;; *zstd) z=--zstd ;; *) z="" ;; esac
    # shellcheck disable=SC2086
    entries=$(tar $z -tvf "$dl" 2>/dev/null | grep -E '^-.* (\\./)?disk/[^/]+$' | wc -l)
    [ "$entries" -eq 0 ] && continue
    [ "$entries" -eq 1 ] || fail NoDiskInImage "layer $digest holds $entries files under disk/; a containerDisk holds one"
    # To stdout only: entries never become files, so no link in the layer points anywhere.
    # shellcheck disable=SC2086
    tar $z -xO --wildcards --no-anchored -f "$dl" 'disk/*' > "$work/disk" 2>"$work/tar.err" || fail CorruptImage "layer $digest: $(head -c 300 "$work/tar.err")"
    mv -f "$work/disk" "$dl"
    found=yes
    break
  done < "$work/layers.rev"
  [ -n "$found" ] || fail NoDiskInImage "no layer of $KEYVIRT_OCI_REF has a file under disk/"
}
# --- upload: received by a CGI behind busybox httpd's Basic auth (the job's token) ---
upload_receive() {
  [ -n "\${KEYVIRT_UPLOAD_TOKEN:-}" ] || fail ImportFailed "the upload job has no token"
  up="\${KEYVIRT_UPLOAD_DIR:-/tmp/upload}"
  rm -rf "$up"; mkdir -p "$up/www/cgi-bin"
  printf '/cgi-bin:${IMPORT_UPLOAD_USER}:%s\\n' "$KEYVIRT_UPLOAD_TOKEN" > "$up/httpd.conf"
  rm -f "$dl" "$work/received"; rmdir "$work/receiving" 2>/dev/null
  { printf '#!/bin/sh\\nwork=%s\\ndl=%s\\n' "$work" "$dl"; cat <<'CGI'
${UPLOAD_CGI}CGI
  } > "$up/www/cgi-bin/upload"
  chmod 0500 "$up/www/cgi-bin/upload"
  set_stage waiting
  busybox httpd -f -p "\${KEYVIRT_UPLOAD_PORT:-${IMPORT_UPLOAD_PORT}}" -h "$up/www" -c "$up/httpd.conf" &
  uploader=$!
  while [ ! -e "$work/received" ]; do
    { [ -d "$work/receiving" ] || [ -s "$dl" ]; } && set_stage uploading
    sleep 1
  done
  kill "$uploader" 2>/dev/null
  uploader=""
}
# --- inspect, convert, put in place ---
hex() { od -An -tx1 -j "$1" -N "$2" "$dl" | tr -d ' \\n'; }
inspect() {
  set_stage inspecting
  [ -s "$dl" ] || fail CorruptImage "the source is empty"
  if [ "$(hex 0 4)" = 514649fb ]; then
    [ "$(hex 8 8)" = 0000000000000000 ] || fail BackingFileRefused "the qcow2 image names a backing file; import a standalone image"
    if [ "$(hex 4 4)" = 00000003 ]; then
      last=$(hex 79 1)
      [ $((0x\${last:-0} & 4)) -eq 0 ] || fail DataFileRefused "the qcow2 image keeps its data in an external file; import a standalone image"
    fi
  fi
  head -c 32 "$dl" | grep -qa 'Disk DescriptorFile' && fail UnsupportedFormat "VMDK descriptor files name other files; import a monolithic VMDK"
  info=$(qemu-img info --output=json "$dl" 2>"$work/qi.err") || fail CorruptImage "qemu-img cannot read the image: $(head -c 500 "$work/qi.err")"
  srcfmt=$(printf '%s\\n' "$info" | sed -n 's/^    "format": "\\([a-z0-9]*\\)",*$/\\1/p' | head -n 1)
  vsize=$(printf '%s\\n' "$info" | sed -n 's/^    "virtual-size": \\([0-9]*\\),*$/\\1/p' | head -n 1)
  printf '%s\\n' "$info" | grep -q '"backing-filename"' && fail BackingFileRefused "the image names a backing file; import a standalone image"
  printf '%s\\n' "$info" | grep -q '"data-file"' && fail DataFileRefused "the image keeps its data in an external file"
  case "$srcfmt" in
    raw|qcow2|vpc|vhdx) ;;
    vmdk) printf '%s\\n' "$info" | grep -Eq '"create-type": "(monolithicSparse|streamOptimized)"' || fail UnsupportedFormat "only monolithic VMDK images are imported" ;;
    '') fail CorruptImage "qemu-img did not name the format" ;;
    *) fail UnsupportedFormat "images in $srcfmt format are not imported (raw, qcow2, vmdk, vpc, vhdx are)" ;;
  esac
}
convert() {
  set_stage converting
  if [ "$srcfmt" = "$KEYVIRT_FORMAT" ]; then
    if [ "$srcfmt" = qcow2 ]; then
      qemu-img check -q -f qcow2 "$dl" > "$work/check.err" 2>&1 || fail CorruptImage "qemu-img check: $(head -c 500 "$work/check.err")"
    fi
    mv -f "$dl" "$out"
  else
    # O_DIRECT both ways where the domain's file system takes it: the job's memory limit
    # counts the page cache, and a conversion through it stalls on reclaim and writeback
    # (ADR 0109). tmpfs and some FUSE file systems refuse O_DIRECT: buffered there.
    cache=""
    if dd if=/dev/zero of="$work/direct" bs=4096 count=1 oflag=direct 2>/dev/null; then cache="-t none -T none"; fi
    rm -f "$work/direct"
    # shellcheck disable=SC2086
    qemu-img convert -q -W $cache -f "$srcfmt" -O "$KEYVIRT_FORMAT" "$dl" "$out" 2>"$work/convert.err" || {
      grep -qi 'no space' "$work/convert.err" && fail NoSpace "the domain is full: $(head -c 300 "$work/convert.err")"
      fail CorruptImage "qemu-img convert: $(head -c 500 "$work/convert.err")"
    }
    rm -f "$dl"
  fi
  mv -f "$out" "$target"
}
report() {
  tfmt=$(qemu-img info --output=json -f "$KEYVIRT_FORMAT" "$target" | sed -n 's/^    "virtual-size": \\([0-9]*\\),*$/\\1/p' | head -n 1)
  alloc=$(du -k "$target" | sed 's/[^0-9].*//')
  bytes=$(cat "$work/bytes" 2>/dev/null || echo 0)
  set -- $(df -P -k "$root" | tail -n 1)
  now=$(date +%s%3N)
  result="{\\"op\\":\\"import\\",\\"format\\":\\"$KEYVIRT_FORMAT\\",\\"sourceFormat\\":\\"\${srcfmt:-$KEYVIRT_FORMAT}\\",\\"virtualSize\\":\${tfmt:-0},\\"allocatedBytes\\":$((alloc * 1024)),\\"sourceBytes\\":$bytes,\\"durationMs\\":$((now - started)),\\"downloadMs\\":$((\${downloaded:-$started} - started)),\\"convertMs\\":$((\${converted:-$now} - \${downloaded:-$now})),\\"capacityBytes\\":$(($2 * 1024)),\\"usedBytes\\":$(($3 * 1024)),\\"freeBytes\\":$(($4 * 1024))}"
  echo "$result"
  if [ -e "$log" ] || [ -n "\${KEYVIRT_RESULT_FILE:-}" ]; then printf '%s' "$result" > "$log"; fi
}
remove() {
  rm -f "$target"
  rm -rf "$work"
  rmdir "$(dirname "$target")" 2>/dev/null
  exit 0
}
[ "$KEYVIRT_OP" = delete ] && remove
mkdir -p "$work" "$www" || fail ImportFailed "cannot create $KEYVIRT_WORK on the domain"
if [ -e "$target" ]; then rm -rf "$work"; mkdir -p "$work"; report; rm -rf "$work"; exit 0; fi
if command -v busybox >/dev/null 2>&1; then
  printf '{"bytes":0,"totalBytes":0,"stage":"starting"}' > "$www/progress"
  busybox httpd -f -p "\${KEYVIRT_PROGRESS_PORT:-${IMPORT_PROGRESS_PORT}}" -h "$www" &
  server=$!
fi
tick &
ticker=$!
set_stage downloading
case "$KEYVIRT_SOURCE" in
  http) http_download ;;
  oci) oci_download ;;
  upload) upload_receive ;;
  *) fail ImportFailed "unknown source $KEYVIRT_SOURCE" ;;
esac
stat -c %s "$dl" > "$work/bytes"
downloaded=$(date +%s%3N)
inspect
convert
converted=$(date +%s%3N)
report
kill "$ticker" 2>/dev/null
[ -n "\${server:-}" ] && kill "$server" 2>/dev/null
rm -rf "$work"
exit 0
`;
