# Reads a cloud-init network-config (version 1 or 2, YAML) and prints how to set up
# the guest's first NIC: "static <address/prefix> <gateway or -> [dns...]" when it
# names a static IPv4 address, else "dhcp". Enough of both formats for one NIC;
# interface names and MAC matches are not interpreted.
function ipv4s(text, out,    n, tok) {
  n = 0
  while (match(text, /[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+(\/[0-9]+)?/)) {
    tok = substr(text, RSTART, RLENGTH)
    out[++n] = tok
    text = substr(text, RSTART + RLENGTH)
  }
  return n
}
function prefix_of(mask,    parts, i, bits, v) {
  split(mask, parts, ".")
  bits = 0
  for (i = 1; i <= 4; i++) {
    v = parts[i] + 0
    while (v > 0) { bits += v % 2; v = int(v / 2) }
  }
  return bits
}
function handle(ctx, key, val,    toks, n, i) {
  n = ipv4s(val, toks)
  if (ctx ~ /nameservers\/addresses$/ || key == "dns_nameservers") {
    for (i = 1; i <= n; i++) dns = dns " " toks[i]
  } else if ((key == "addresses" || key == "address") && n > 0 && addr == "") {
    addr = toks[1]
  } else if (key == "netmask" && n > 0) {
    mask = toks[1]
  } else if ((key == "gateway4" || key == "gateway") && n > 0 && gw == "") {
    gw = toks[1]
  } else if (key == "via" && ctx ~ /routes/ && n > 0 && gw == "") {
    gw = toks[1]
  }
}
{
  line = $0
  sub(/[ \t]+#.*$/, "", line)
  if (line ~ /^[ \t]*(#.*)?$/) next
  match(line, /^ */)
  ind = RLENGTH
  body = substr(line, ind + 1)
  item = 0
  if (body ~ /^-( |$)/) {
    item = 1
    body = substr(body, 2)
    match(body, /^ */)
    ind += 1 + RLENGTH
    body = substr(body, RLENGTH + 1)
  }
  if (match(body, /^"?[A-Za-z0-9_-]+"?:/)) {
    key = substr(body, 1, RLENGTH - 1)
    gsub(/"/, "", key)
    val = substr(body, RLENGTH + 1)
    while (depth > 0 && indent[depth] >= ind) depth--
    indent[++depth] = ind
    name[depth] = key
    ctx = ""
    for (i = 1; i <= depth; i++) ctx = ctx "/" name[i]
    handle(ctx, key, val)
  } else if (item && depth > 0) {
    ctx = ""
    for (i = 1; i <= depth; i++) ctx = ctx "/" name[i]
    handle(ctx, name[depth], body)
  }
}
END {
  if (addr == "") { print "dhcp"; exit }
  if (addr !~ /\//) addr = addr "/" (mask != "" ? prefix_of(mask) : 24)
  print "static " addr " " (gw != "" ? gw : "-") dns
}
