#!/usr/bin/env bash
# A real OCI registry (Debian's docker-registry, distribution 2.8) on loopback, for the registry
# tests: its own configuration, storage, certificates and token server under DIR; Debian's
# service and /etc/docker/registry are never used.
#
#   registry.sh start DIR MODE   prints HOST:PORT (127.0.0.1 and a free port) once /v2/ answers
#   registry.sh stop DIR         stops the registry and its token server, if they run
#
# MODE is one of, or a comma-separated mix of (at most one of htpasswd and token):
#   anonymous  plain HTTP, no authentication
#   htpasswd   Basic authentication: user steve, password s3cret (bcrypt, htpasswd -B)
#   token      Bearer tokens from Fixtures/token-server.py (anonymous: pull; steve:s3cret: pull,
#              push, delete), signed by a key whose certificate is the registry's rootcertbundle
#   tls        HTTPS with a certificate for 127.0.0.1 and localhost from a CA made here; with
#              token, the token server speaks HTTPS with the same certificate
# Deleting (manifests and blobs by digest) is enabled.
#
# What DIR holds after start:
#   host, url         HOST:PORT and the registry's base URL (http:// or https://)
#   pid               the registry's pid
#   config.yml        its configuration; registry.log its log; storage/ its blobs
#   ca.pem            (tls) the CA certificate clients trust; certs/ca.crt the same for
#                     skopeo's --cert-dir / --dest-cert-dir
#   htpasswd          (htpasswd) the password file
#   token.log         (token) one line per token request: METHOD PATH STATUS ACCOUNT GRANTED
#   token-host, token.pid, token-key.pem, token-cert.pem   (token) the token server's
# Needs docker-registry, apache2-utils (htpasswd), openssl, curl, python3.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=Fixtures/inherited-fds.sh disable=SC1091
. "$here/inherited-fds.sh"
service=lstore-test-registry
issuer=lstore-test-token-server

usage() {
	echo "usage: registry.sh start DIR anonymous|htpasswd|token|tls[,...] | registry.sh stop DIR" >&2
	exit 2
}

# True when pid $1 is a live process (not a zombie) whose command line contains $2.
running() {
	local pid=$1 mark=$2 state
	[ -r "/proc/$pid/cmdline" ] || return 1
	state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || echo Z)
	[ "$state" != Z ] || return 1
	# Not `tr | grep -q`: grep leaving early would fail the pipe (pipefail) on a match.
	local command
	command=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
	[[ $command == *"$mark"* ]]
}

# Stops the process whose pid file is $1 when its command line contains $2 (a pid that was
# reused by another process is left alone), then removes the pid file.
stop_pid() {
	local file=$1 mark=$2 pid
	[ -f "$file" ] || return 0
	pid=$(cat "$file")
	if [ -n "$pid" ] && running "$pid" "$mark"; then
		kill "$pid" 2>/dev/null || true
		for _ in $(seq 50); do
			running "$pid" "$mark" || break
			sleep 0.1
		done
		running "$pid" "$mark" && kill -9 "$pid" 2>/dev/null
	fi
	rm -f "$file"
}

# The CA (ca.pem) and the server certificate for 127.0.0.1 and localhost it signs.
make_certificates() {
	local dir=$1
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
		-subj "/CN=lstore test CA" -addext "basicConstraints=critical,CA:TRUE" \
		-addext "keyUsage=critical,keyCertSign,cRLSign" \
		-keyout "$dir/ca-key.pem" -out "$dir/ca.pem" 2>/dev/null
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=127.0.0.1" \
		-keyout "$dir/server-key.pem" -out "$dir/server.csr" 2>/dev/null
	printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "extendedKeyUsage=serverAuth" \
		"basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" >"$dir/server.ext"
	openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca-key.pem" -CAcreateserial \
		-days 30 -extfile "$dir/server.ext" -out "$dir/server.pem" 2>/dev/null
	rm -f "$dir/server.csr" "$dir/server.ext" "$dir/ca.srl"
	mkdir -p "$dir/certs"
	cp "$dir/ca.pem" "$dir/certs/ca.crt"
}

# Starts the token server; prints its HOST:PORT.
start_token_server() {
	local dir=$1 tls=$2
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 -subj "/CN=lstore test token signer" \
		-keyout "$dir/token-key.pem" -out "$dir/token-cert.pem" 2>/dev/null
	local args=(--key "$dir/token-key.pem" --cert "$dir/token-cert.pem" --issuer "$issuer"
		--service "$service" --log "$dir/token.log")
	[ "$tls" = no ] || args+=(--tls-cert "$dir/server.pem" --tls-key "$dir/server-key.pem")
	: >"$dir/token-host"
	python3 "$here/token-server.py" "${args[@]}" </dev/null >"$dir/token-host" 2>"$dir/token-server.err" &
	echo $! >"$dir/token.pid"
	for _ in $(seq 100); do
		[ -s "$dir/token-host" ] && break
		kill -0 "$(cat "$dir/token.pid")" 2>/dev/null || break
		sleep 0.1
	done
	if [ ! -s "$dir/token-host" ]; then
		echo "registry.sh: the token server did not start: $(tail -n 3 "$dir/token-server.err")" >&2
		exit 1
	fi
	head -n 1 "$dir/token-host"
}

start() {
	local dir=$1 modes=$2 tls=no auth=none mode
	IFS=, read -r -a parts <<<"$modes"
	[ "${#parts[@]}" -gt 0 ] || usage
	for mode in "${parts[@]}"; do
		case $mode in
		anonymous) ;;
		tls) tls=yes ;;
		htpasswd | token)
			if [ "$auth" != none ]; then
				echo "registry.sh: mode $modes: htpasswd and token do not combine" >&2
				exit 2
			fi
			auth=$mode
			;;
		*)
			echo "registry.sh: mode $modes: unknown mode '$mode' (anonymous, htpasswd, token, tls)" >&2
			exit 2
			;;
		esac
	done
	mkdir -p "$dir/storage"
	dir=$(cd "$dir" && pwd)
	if [ -f "$dir/pid" ] && running "$(cat "$dir/pid")" "$dir/config.yml"; then
		echo "registry.sh: $dir: a registry already runs there (pid $(cat "$dir/pid"))" >&2
		exit 1
	fi
	local scheme=http curl_args=(-s -o /dev/null -w '%{http_code}' --max-time 2)
	if [ "$tls" = yes ]; then
		make_certificates "$dir"
		scheme=https
		curl_args+=(--cacert "$dir/ca.pem")
	fi
	{
		echo "version: 0.1"
		echo "log:"
		echo "  level: info"
		echo "storage:"
		echo "  filesystem:"
		echo "    rootdirectory: $dir/storage"
		echo "  delete:"
		echo "    enabled: true"
		echo "  maintenance:"
		echo "    uploadpurging:"
		echo "      enabled: false"
		echo "http:"
		echo "  addr: 127.0.0.1:0"
		echo "  secret: $(openssl rand -hex 16)"
		if [ "$tls" = yes ]; then
			echo "  tls:"
			echo "    certificate: $dir/server.pem"
			echo "    key: $dir/server-key.pem"
		fi
		case $auth in
		htpasswd)
			htpasswd -B -b -c "$dir/htpasswd" steve s3cret 2>/dev/null
			echo "auth:"
			echo "  htpasswd:"
			echo "    realm: lstore-test"
			echo "    path: $dir/htpasswd"
			;;
		token)
			local token_host
			token_host=$(start_token_server "$dir" "$tls")
			echo "auth:"
			echo "  token:"
			echo "    realm: $scheme://$token_host/token"
			echo "    service: $service"
			echo "    issuer: $issuer"
			echo "    rootcertbundle: $dir/token-cert.pem"
			;;
		esac
	} >"$dir/config.yml"
	# Settings from the environment (REGISTRY_*) would override the file: none pass.
	env -u REGISTRY_HTTP_ADDR -u REGISTRY_STORAGE -u REGISTRY_AUTH \
		docker-registry serve "$dir/config.yml" </dev/null >"$dir/registry.log" 2>&1 &
	local pid=$!
	echo "$pid" >"$dir/pid"
	local host="" code=""
	for _ in $(seq 200); do
		if ! running "$pid" "$dir/config.yml"; then
			echo "registry.sh: docker-registry exited: $(tail -n 3 "$dir/registry.log")" >&2
			stop_pid "$dir/token.pid" "$dir/token.log"
			exit 1
		fi
		if [ -z "$host" ]; then
			host=$(sed -n 's/.*msg="listening on \(127\.0\.0\.1:[0-9]*\).*/\1/p' "$dir/registry.log" | head -n 1)
		fi
		if [ -n "$host" ]; then
			code=$(curl "${curl_args[@]}" "$scheme://$host/v2/" || true)
			case $code in 200 | 401) break ;; esac
		fi
		sleep 0.1
	done
	case $code in
	200 | 401) ;;
	*)
		echo "registry.sh: the registry at ${host:-?} did not answer /v2/ (last status ${code:-none})" >&2
		stop_pid "$dir/pid" "$dir/config.yml"
		stop_pid "$dir/token.pid" "$dir/token.log"
		exit 1
		;;
	esac
	echo "$host" >"$dir/host"
	echo "$scheme://$host" >"$dir/url"
	echo "$host"
}

stop() {
	local dir=$1
	[ -d "$dir" ] || return 0
	dir=$(cd "$dir" && pwd)
	stop_pid "$dir/pid" "$dir/config.yml"
	stop_pid "$dir/token.pid" "$dir/token.log"
}

case ${1:-} in
start)
	[ $# -eq 3 ] || usage
	start "$2" "$3"
	;;
stop)
	[ $# -eq 2 ] || usage
	stop "$2"
	;;
*) usage ;;
esac
