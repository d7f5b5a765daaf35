#!/usr/bin/env bash
# Runs a jitfs zone cache: stock nginx (with the slice module) in the
# foreground, caching pinned GCS object reads for many jitfs nodes.
#
#   start.sh --listen HOST:PORT --origin URL --cache-dir DIR --max-size SIZE
#            [--allow CIDR ...] [--token-file FILE] [--open]
#            [--origin-token-file FILE] [--origin-ca-file FILE] [--slice SIZE]
#
# It renders nginx.conf.template (next to this script) into DIR/conf and
# execs nginx, so SIGTERM/SIGINT reach nginx itself and stop it. Everything
# it writes is under DIR. It installs nothing: NGINX=/path/to/nginx picks the
# binary (default: nginx on PATH, then /usr/sbin/nginx). docs/zone.md has the
# why of every choice.
set -euo pipefail
shopt -u patsub_replacement 2>/dev/null || true

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
die() { echo "zone-cache: $*" >&2; exit 2; }

# 1 MiB: measured in internal/zonecache's BenchmarkSlice (docs/zone.md).
default_slice=1048576

listen="" origin="" cache_dir="" max_size="" token_file="" open=0
origin_token_file="" origin_ca_file="" slice=""
allow=()
while [ $# -gt 0 ]; do
  flag=$1
  case $flag in
    --open) open=1; shift; continue ;;
    --listen|--origin|--cache-dir|--max-size|--allow|--token-file|--origin-token-file|--origin-ca-file|--slice) ;;
    -h|--help) sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $flag (see --help)" ;;
  esac
  [ $# -ge 2 ] || die "$flag needs a value"
  val=$2
  shift 2
  case $flag in
    --listen) listen=$val ;;
    --origin) origin=$val ;;
    --cache-dir) cache_dir=$val ;;
    --max-size) max_size=$val ;;
    --allow) allow+=("$val") ;;
    --token-file) token_file=$val ;;
    --origin-token-file) origin_token_file=$val ;;
    --origin-ca-file) origin_ca_file=$val ;;
    --slice) slice=$val ;;
  esac
done

# bytes SIZE: a byte count with an optional K/M/G/T suffix (KiB, MiB, ... and
# k, m, ... too; all binary), printed as bytes.
bytes() {
  local s=$1 n unit
  [[ $s =~ ^([0-9]+)([KkMmGgTt]?)(i?B)?$ ]] || return 1
  n=${BASH_REMATCH[1]} unit=${BASH_REMATCH[2]}
  [ ${#n} -le 15 ] || return 1
  case $unit in
    K|k) n=$((10#$n << 10)) ;; M|m) n=$((10#$n << 20)) ;;
    G|g) n=$((10#$n << 30)) ;; T|t) n=$((10#$n << 40)) ;;
    *) n=$((10#$n)) ;;
  esac
  echo "$n"
}

[ -n "$listen" ] || die "--listen HOST:PORT is required"
[ -n "$origin" ] || die "--origin URL is required (https://storage.googleapis.com)"
[ -n "$cache_dir" ] || die "--cache-dir DIR is required"
[ -n "$max_size" ] || die "--max-size SIZE is required (e.g. 500GiB)"

[[ $listen =~ ^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})$ ]] || die "--listen $listen: want HOST:PORT"
port=$((10#${BASH_REMATCH[2]}))
[ "$port" -ge 1 ] && [ "$port" -le 65535 ] || die "--listen $listen: port out of range"

[[ $origin =~ ^(https?)://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:([0-9]{1,5}))?/?$ ]] ||
  die "--origin $origin: want http(s)://HOST[:PORT], the GCS JSON API endpoint with no path"
origin_scheme=${BASH_REMATCH[1]} origin_hostname=${BASH_REMATCH[2]} origin_port=${BASH_REMATCH[4]}
if [ -n "$origin_port" ]; then
  origin_host="$origin_hostname:$origin_port"
else
  origin_host=$origin_hostname
  if [ "$origin_scheme" = https ]; then origin_port=443; else origin_port=80; fi
fi
origin="$origin_scheme://$origin_host"

max_bytes=$(bytes "$max_size") || die "--max-size $max_size: want a size like 500GiB, 2T or 1073741824"
[ "$max_bytes" -ge $((64 << 20)) ] || die "--max-size $max_size: below the 64MiB minimum"
if [ -n "$slice" ]; then
  slice_bytes=$(bytes "$slice") || die "--slice $slice: want a size like 1MiB"
else
  slice_bytes=$default_slice
fi
# A slice that is a multiple of jitfs's 64 KiB block keeps every node block
# inside one slice.
[ "$slice_bytes" -ge 65536 ] && [ $((slice_bytes % 65536)) -eq 0 ] ||
  die "--slice $slice: want a multiple of 64KiB"
[ "$slice_bytes" -le $((64 << 20)) ] || die "--slice $slice: above the 64MiB maximum"

# Who may read: the operator must say.
if [ "$open" -eq 1 ] && { [ ${#allow[@]} -gt 0 ] || [ -n "$token_file" ]; }; then
  die "--open lets anyone read; it cannot be combined with --allow or --token-file"
fi
if [ "$open" -eq 0 ] && [ ${#allow[@]} -eq 0 ] && [ -z "$token_file" ]; then
  die "refusing to start: say who may read with --allow CIDR, --token-file FILE, or --open (anyone who can reach $listen)"
fi
for a in "${allow[@]}"; do
  [[ $a =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}(/[0-9]{1,2})?$ || $a =~ ^[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*(/[0-9]{1,3})?$ ]] ||
    die "--allow $a: want an IPv4 or IPv6 address or CIDR"
done

# readtoken FILE WHAT MIN: the file's content without surrounding whitespace,
# refused when it holds anything but token characters (it goes into the
# nginx configuration) or is shorter than MIN.
readtoken() {
  local f=$1 what=$2 min=$3 t
  [ -r "$f" ] && [ -f "$f" ] || { echo "$what $f: not a readable file"; return 1; }
  t=$(<"$f") || { echo "$what $f: cannot read"; return 1; }
  t=${t#"${t%%[![:space:]]*}"} t=${t%"${t##*[![:space:]]}"}
  [[ $t =~ ^[A-Za-z0-9._~+/=-]+$ ]] || { echo "$what $f: want one token of letters, digits and ._~+/=-"; return 1; }
  [ ${#t} -ge "$min" ] || { echo "$what $f: token shorter than $min characters"; return 1; }
  echo "$t"
}

zone_token=""
if [ -n "$token_file" ]; then
  zone_token=$(readtoken "$token_file" --token-file 16) || die "$zone_token"
fi
origin_token=""
if [ -n "$origin_token_file" ]; then
  origin_token_file=$(cd "$(dirname "$origin_token_file")" 2>/dev/null && pwd)/$(basename "$origin_token_file") ||
    die "--origin-token-file $origin_token_file: no such directory"
  origin_token=$(readtoken "$origin_token_file" --origin-token-file 1) || die "$origin_token"
fi
if [ "$origin_scheme" = https ]; then
  [ -n "$origin_ca_file" ] || origin_ca_file=/etc/ssl/certs/ca-certificates.crt
  [ -r "$origin_ca_file" ] || die "--origin-ca-file $origin_ca_file: not readable (Debian: apt-get install ca-certificates)"
  origin_ca_file=$(cd "$(dirname "$origin_ca_file")" && pwd)/$(basename "$origin_ca_file")
elif [ -n "$origin_ca_file" ]; then
  die "--origin-ca-file is for an https origin"
fi

nginx=${NGINX:-}
if [ -z "$nginx" ]; then
  nginx=$(command -v nginx 2>/dev/null || true)
  [ -n "$nginx" ] || { [ -x /usr/sbin/nginx ] && nginx=/usr/sbin/nginx; } ||
    die "nginx is not installed (Debian: apt-get install nginx-light)"
fi
nginx_v=$("$nginx" -V 2>&1) || die "$nginx -V failed: $nginx_v"
[[ $nginx_v == *--with-http_slice_module* ]] || die "$nginx lacks the slice module (Debian's nginx-light has it)"

umask 077 # the rendered configuration holds the zone token and origin token
mkdir -p "$cache_dir" || die "--cache-dir $cache_dir: cannot create"
cache_dir=$(cd "$cache_dir" && pwd -P)
# It is quoted in the configuration: only a quote, backslash or $ would
# break out of that.
[[ $cache_dir =~ ^[^\"\\\$[:cntrl:]]+$ ]] || die "--cache-dir $cache_dir: want a path without quotes, backslashes or \$"
[ -w "$cache_dir" ] || die "--cache-dir $cache_dir: not writable"
mkdir -p "$cache_dir/conf" "$cache_dir/run" "$cache_dir/tmp" "$cache_dir/data"

user_line=""
if [ "$(id -u)" -eq 0 ]; then
  # Workers run as the cache dir's owner: chown DIR to a service user and
  # the root master drops to it.
  user_line="user $(stat -c %U "$cache_dir") $(stat -c %G "$cache_dir");"
fi

# One file descriptor per client connection and one per origin connection.
nofile=$(ulimit -Hn)
[ "$nofile" = unlimited ] && nofile=65536
[ "$nofile" -le 65536 ] || nofile=65536
ulimit -Sn "$nofile" 2>/dev/null || nofile=$(ulimit -Sn)
connections=$((nofile / 2))
[ "$connections" -le 16384 ] || connections=16384

# About 8000 keys per MB; a key per slice of max_size, doubled for objects
# smaller than a slice (one key each) and last slices.
keys_mb=$(( (max_bytes / slice_bytes * 2 + 7999) / 8000 ))
[ "$keys_mb" -ge 16 ] || keys_mb=16

other_temp=""
for m in fastcgi uwsgi scgi; do
  [[ $nginx_v == *--without-http_${m}_module* ]] ||
    other_temp+="    ${m}_temp_path \"$cache_dir/tmp/$m\";"$'\n'
done

addr_default=1 allow_lines=""
if [ ${#allow[@]} -gt 0 ]; then
  addr_default=0
  for a in "${allow[@]}"; do allow_lines+="        $a 1;"$'\n'; done
fi
token_default=1 token_lines=""
if [ -n "$zone_token" ]; then
  token_default=0
  # Every non-alphanumeric character escaped: literal in the regex.
  re=$(sed 's/[^A-Za-z0-9]/\\&/g' <<<"$zone_token")
  token_lines="        \"~^$re\$\" 1;"
fi

origin_tls=""
if [ "$origin_scheme" = https ]; then
  origin_tls="            proxy_ssl_server_name on;
            proxy_ssl_name $origin_hostname;
            proxy_ssl_verify on;
            proxy_ssl_verify_depth 4;
            proxy_ssl_trusted_certificate \"$origin_ca_file\";
            proxy_ssl_protocols TLSv1.2 TLSv1.3;
            proxy_ssl_session_reuse on;"
fi

# origin-auth.conf is its own file so a new origin token is a re-render of
# it and a reload, nothing else.
write_origin_auth() {
  local tmp="$cache_dir/conf/origin-auth.conf.new"
  if [ -n "$1" ]; then
    printf 'proxy_set_header Authorization "Bearer %s";\n' "$1" >"$tmp"
  else
    printf 'proxy_set_header Authorization "";\n' >"$tmp"
  fi
  mv -f "$tmp" "$cache_dir/conf/origin-auth.conf"
}

conf=$(<"$here/nginx.conf.template")
sub() { conf=${conf//"@$1@"/"$2"}; }
sub USER "$user_line"
sub CONNECTIONS "$connections"
sub OTHER_TEMP_PATHS "${other_temp%$'\n'}"
sub KEYS_ZONE "${keys_mb}m"
sub MAX_SIZE "$max_bytes"
sub ORIGIN_HOSTPORT "$origin_hostname:$origin_port"
sub ADDR_DEFAULT "$addr_default"
sub ALLOW_LINES "${allow_lines%$'\n'}"
sub TOKEN_DEFAULT "$token_default"
sub TOKEN_LINES "$token_lines"
sub LISTEN "$listen"
sub SLICE "$slice_bytes"
sub ORIGIN_SCHEME "$origin_scheme"
sub ORIGIN_HOST "$origin_host"
sub ORIGIN_TLS "$origin_tls"
sub ORIGIN "$origin"
sub DIR "$cache_dir"
printf '%s\n' "$conf" >"$cache_dir/conf/nginx.conf.new"
mv -f "$cache_dir/conf/nginx.conf.new" "$cache_dir/conf/nginx.conf"
write_origin_auth "$origin_token"

if [ -n "$origin_token_file" ]; then
  # A sidecar refreshes the token (GCE metadata tokens last an hour): poll
  # the file, and on a new valid token rewrite origin-auth.conf and reload.
  # After the exec below, $$ is nginx's master; the loop ends with it.
  (
    cur=$origin_token
    while kill -0 $$ 2>/dev/null; do
      sleep 2
      new=$(readtoken "$origin_token_file" --origin-token-file 1 2>/dev/null) || continue
      [ "$new" != "$cur" ] || continue
      # nginx installs its signal handlers before writing the pid file:
      # before that a SIGHUP would kill it.
      [ "$(cat "$cache_dir/run/nginx.pid" 2>/dev/null)" = "$$" ] || continue
      write_origin_auth "$new"
      cur=$new
      echo "zone-cache: origin token changed; reloading nginx" >&2
      kill -HUP $$ 2>/dev/null || true
    done
  ) </dev/null &
fi

exec "$nginx" -e stderr -p "$cache_dir/" -c "$cache_dir/conf/nginx.conf"
