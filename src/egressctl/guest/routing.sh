#!/bin/sh
# egressctl guest routing: replies from a secondary ENI's IP leave through that ENI, while new
# outbound connections keep the primary NIC and the main table's default route (egress = SNAT IP).
# POSIX sh + iproute2. Installed as /usr/local/lib/egressctl/egress-routing.sh; documented in
# docs/guest-routing.md of the egressctl repository.
#
#   egress-routing.sh apply|check|remove    rows in $EGRESSCTL_ROWS (set by the rendered script)
#   egress-routing.sh check                 no rows: every /etc/egressctl/eni-*.conf
#   egress-routing.sh reapply [--no-wait]   every /etc/egressctl/eni-*.conf (systemd unit, hooks)
#
# Row: "MAC IP PREFIX GATEWAY ENI_ID|- TABLE PRIORITY WAIT_S". Exit status: 0 ok or changed,
# 1 drift (check) or error. The last line on stdout is "EGRESSCTL_RESULT {json}".
set -u
umask 022
LC_ALL=C
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export LC_ALL PATH

EC_VERSION=1
EC_CONF_DIR=/etc/egressctl
EC_LIB_DIR=/usr/local/lib/egressctl
EC_LIB=$EC_LIB_DIR/egress-routing.sh
EC_UNIT=/etc/systemd/system/egressctl-routing.service
EC_WANTS_DIR=/etc/systemd/system/multi-user.target.wants
EC_WANTS=$EC_WANTS_DIR/egressctl-routing.service
EC_NM_DIR=/etc/NetworkManager/dispatcher.d
EC_NM_HOOK=$EC_NM_DIR/90-egressctl-routing
EC_ND_DIR=/etc/networkd-dispatcher
EC_ND_HOOK=$EC_ND_DIR/routable.d/50-egressctl-routing
EC_PROTO=236        # routes egressctl adds carry "proto 236"; remove deletes only those
EC_PROBE=192.0.2.1  # TEST-NET-1, destination of the "ip route get" probes (nothing is sent)
EC_NL='
'

# Files other than the config are fixed text (built with printf so that every line of this script
# is code or a comment, which lets egressctl strip comments when it embeds the script).
EC_UNIT_TEXT=$(printf '%s\n' "# Written by egressctl (docs/guest-routing.md); deleted by its 'remove' mode." \
	'[Unit]' 'Description=egressctl policy routing for secondary ENIs (replies from the ENI IP leave via the ENI)' \
	'After=network-online.target' 'Wants=network-online.target' '' '[Service]' 'Type=oneshot' \
	'RemainAfterExit=yes' "ExecStart=/bin/sh $EC_LIB reapply" '' '[Install]' 'WantedBy=multi-user.target')
EC_NM_TEXT=$(printf '%s\n' '#!/bin/sh' \
	'# egressctl: re-apply ENI policy routing when NetworkManager brings a link up or renews DHCP.' \
	"[ -r $EC_LIB ] || exit 0" "case \${2-} in" "up | dhcp4-change | reapply) exec /bin/sh $EC_LIB reapply --no-wait ;;" \
	'esac' 'exit 0')
EC_ND_TEXT=$(printf '%s\n' '#!/bin/sh' \
	'# egressctl: re-apply ENI policy routing when systemd-networkd reports a link routable.' \
	"[ -r $EC_LIB ] || exit 0" "exec /bin/sh $EC_LIB reapply --no-wait")

# ---------------------------------------------------------------------------- messages, JSON

ec_say() { printf 'egressctl: %s\n' "$1"; }
ec_oneline() { printf '%s' "$1" | tr '\n\t' '  '; }
ec_change() {
	ec_say "changed: $1"
	E_CHANGES=$E_CHANGES$1$EC_NL
}
ec_err() {
	ec_say "error: $1"
	E_ERRS=$E_ERRS$1$EC_NL
}
ec_diff() {
	if [ "$EC_VERIFYING" = 1 ]; then
		ec_err "still differs after apply: $1"
	else
		ec_say "differs: $1"
	fi
	E_DIFFS=$E_DIFFS$1$EC_NL
}

# ec_do DESCRIPTION COMMAND...: run a command that changes the system; record a change or an error.
ec_do() {
	_do_what=$1
	shift
	if _do_out=$("$@" 2>&1); then
		ec_change "$_do_what"
		return 0
	fi
	ec_err "$_do_what: $(ec_oneline "$_do_out")"
	return 1
}

ec_json_str() {
	printf '"%s"' "$(printf '%s' "$1" | tr -d '\000-\037' | sed 's/\\/\\\\/g; s/"/\\"/g')"
}

# ec_json_list LIST: newline-separated items as a JSON array of strings.
ec_json_list() {
	_jl_out=''
	_jl_ifs=$IFS
	IFS=$EC_NL
	set -f
	for _jl_item in $1; do
		[ -n "$_jl_out" ] && _jl_out="$_jl_out,"
		_jl_out=$_jl_out$(ec_json_str "$_jl_item")
	done
	set +f
	IFS=$_jl_ifs
	printf '[%s]' "$_jl_out"
}

# ---------------------------------------------------------------------------- validation
# The same rules as egressctl.guest.script.GuestRouting, checked again here: rows and config files
# that do not validate are never used.

ec_uint() {
	case $1 in '' | *[!0-9]* | 0?*) return 1 ;; esac
	[ ${#1} -le 9 ]
}
ec_range() { ec_uint "$1" && [ "$1" -ge "$2" ] && [ "$1" -le "$3" ]; }
ec_mac() {
	case $1 in
	[0-9a-f][0-9a-f]:[0-9a-f][0-9a-f]:[0-9a-f][0-9a-f]:[0-9a-f][0-9a-f]:[0-9a-f][0-9a-f]:[0-9a-f][0-9a-f]) return 0 ;;
	esac
	return 1
}
ec_ipv4() {
	case $1 in '' | *[!0-9.]* | .* | *. | *..*) return 1 ;; esac
	_v4_ifs=$IFS
	IFS=.
	# shellcheck disable=SC2086 # split on the dots
	set -- $1
	IFS=$_v4_ifs
	[ $# -eq 4 ] || return 1
	for _v4_octet in "$@"; do
		ec_range "$_v4_octet" 0 255 || return 1
	done
}
# ec_ip2int IP: EC_INT = the address as an integer; ec_int2ip N: EC_IP = the dotted address.  They set
# variables instead of printing: a batch script validates a hundred rows, and every $(...) is a fork.
ec_ip2int() {
	_i2_ifs=$IFS
	IFS=.
	# shellcheck disable=SC2086 # split on the dots
	set -- $1
	IFS=$_i2_ifs
	EC_INT=$((($1 << 24) + ($2 << 16) + ($3 << 8) + $4))
}
ec_int2ip() { EC_IP="$((($1 >> 24) & 255)).$((($1 >> 16) & 255)).$((($1 >> 8) & 255)).$(($1 & 255))"; }

# ec_row MAC IP PREFIX GATEWAY ENI TABLE PRIORITY WAIT_S: validate a row and load it into R_*;
# on failure EC_BAD names the field.
ec_row() {
	EC_BAD=''
	if [ $# -ne 8 ]; then
		EC_BAD="expected 8 fields, got $#"
		return 1
	fi
	ec_mac "$1" || EC_BAD='mac: not a lower-case aa:bb:cc:dd:ee:ff address'
	ec_ipv4 "$2" || EC_BAD='ip: not an IPv4 address'
	ec_range "$3" 16 29 || EC_BAD='prefix: not an integer in 16..29'
	ec_ipv4 "$4" || EC_BAD='gateway: not an IPv4 address'
	case $5 in
	-) ;;
	eni-*)
		_rw_id=${5#eni-}
		case $_rw_id in *[!a-z0-9]*) EC_BAD='eni_id: does not match eni-[a-z0-9]{8,32}' ;; esac
		if [ ${#_rw_id} -lt 8 ] || [ ${#_rw_id} -gt 32 ]; then
			EC_BAD='eni_id: does not match eni-[a-z0-9]{8,32}'
		fi
		;;
	*) EC_BAD='eni_id: does not match eni-[a-z0-9]{8,32}' ;;
	esac
	ec_range "$6" 20001 20999 || EC_BAD='table: not an integer in 20001..20999'
	ec_range "$7" 9001 9999 || EC_BAD='priority: not an integer in 9001..9999'
	ec_range "$8" 0 600 || EC_BAD='wait_s: not an integer in 0..600'
	[ -z "$EC_BAD" ] || return 1
	ec_ip2int "$2"
	_rw_ip=$EC_INT
	ec_ip2int "$4"
	_rw_gw=$EC_INT
	_rw_mask=$(((4294967295 << (32 - $3)) & 4294967295))
	_rw_net=$((_rw_ip & _rw_mask))
	_rw_bc=$((_rw_net | (4294967295 ^ _rw_mask)))
	if [ $((_rw_gw & _rw_mask)) -ne "$_rw_net" ]; then
		EC_BAD='gateway: not inside ip/prefix'
	elif [ "$_rw_gw" -eq "$_rw_ip" ]; then
		EC_BAD='gateway: equals ip'
	elif [ "$_rw_ip" -eq "$_rw_net" ] || [ "$_rw_ip" -eq "$_rw_bc" ]; then
		EC_BAD='ip: network or broadcast address of its subnet'
	elif [ "$_rw_gw" -eq "$_rw_net" ] || [ "$_rw_gw" -eq "$_rw_bc" ]; then
		EC_BAD='gateway: network or broadcast address of its subnet'
	fi
	[ -z "$EC_BAD" ] || return 1
	R_MAC=$1 R_IP=$2 R_PREFIX=$3 R_GW=$4 R_ENI=$5 R_TABLE=$6 R_PRIO=$7 R_WAIT=$8
	ec_int2ip "$_rw_net"
	R_NET=$EC_IP/$3
	R_LINE="$1 $2 $3 $4 $5 $6 $7 $8"
}

# ec_set_row LINE: load an already validated row line.
ec_set_row() {
	# shellcheck disable=SC2086 # split the row into its fields
	set -- $1
	ec_row "$@"
}

ec_conf_path() {
	if [ "$R_ENI" = - ]; then
		echo "$EC_CONF_DIR/eni-mac-$(printf '%s' "$R_MAC" | tr -d :).conf"
	else
		echo "$EC_CONF_DIR/$R_ENI.conf"
	fi
}

ec_conf_text() {
	_ct_eni=$R_ENI
	[ "$_ct_eni" = - ] && _ct_eni=''
	printf '%s\n' "# egressctl: policy routing for one secondary ENI (written by egressctl; do not edit)." \
		"# Re-applied by egressctl-routing.service and the network hooks; see docs/guest-routing.md." \
		"EGRESSCTL_MAC=$R_MAC" "EGRESSCTL_IP=$R_IP" "EGRESSCTL_PREFIX=$R_PREFIX" \
		"EGRESSCTL_GATEWAY=$R_GW" "EGRESSCTL_ENI_ID=$_ct_eni" "EGRESSCTL_TABLE=$R_TABLE" \
		"EGRESSCTL_PRIORITY=$R_PRIO" "EGRESSCTL_WAIT_S=$R_WAIT" \
		"EGRESSCTL_OWN_ADDRESS=$R_OWN_ADDR" "EGRESSCTL_OWN_LINK=$R_OWN_LINK"
}

# ec_conf_line FILE (run in $(...)): print "ROW OWN_ADDRESS OWN_LINK" of a valid config file, or the
# reason it is invalid (exit 1). Config files are parsed, never sourced.
ec_conf_line() {
	_cl_mac='' _cl_ip='' _cl_prefix='' _cl_gw='' _cl_eni='' _cl_table='' _cl_prio='' _cl_wait=''
	_cl_oa=0 _cl_ol=0
	if [ ! -f "$1" ] || [ ! -r "$1" ]; then
		echo 'cannot read it'
		return 1
	fi
	while IFS='=' read -r _cl_k _cl_v || [ -n "$_cl_k" ]; do
		case $_cl_k in
		'' | '#'*) ;;
		EGRESSCTL_MAC) _cl_mac=$_cl_v ;;
		EGRESSCTL_IP) _cl_ip=$_cl_v ;;
		EGRESSCTL_PREFIX) _cl_prefix=$_cl_v ;;
		EGRESSCTL_GATEWAY) _cl_gw=$_cl_v ;;
		EGRESSCTL_ENI_ID) _cl_eni=$_cl_v ;;
		EGRESSCTL_TABLE) _cl_table=$_cl_v ;;
		EGRESSCTL_PRIORITY) _cl_prio=$_cl_v ;;
		EGRESSCTL_WAIT_S) _cl_wait=$_cl_v ;;
		EGRESSCTL_OWN_ADDRESS) _cl_oa=$_cl_v ;;
		EGRESSCTL_OWN_LINK) _cl_ol=$_cl_v ;;
		*)
			echo 'unknown key in it'
			return 1
			;;
		esac
	done <"$1"
	[ -n "$_cl_eni" ] || _cl_eni=-
	if ! ec_row "$_cl_mac" "$_cl_ip" "$_cl_prefix" "$_cl_gw" "$_cl_eni" "$_cl_table" "$_cl_prio" "$_cl_wait"; then
		echo "$EC_BAD"
		return 1
	fi
	case $_cl_oa$_cl_ol in 00 | 01 | 10 | 11) ;; *)
		echo 'EGRESSCTL_OWN_ADDRESS/EGRESSCTL_OWN_LINK: not 0 or 1'
		return 1
		;;
	esac
	echo "$R_LINE $_cl_oa $_cl_ol"
}

# ec_confs: the config files, one per line (only names egressctl writes: safe to split on blanks).
ec_confs() {
	for _cs_f in "$EC_CONF_DIR"/eni-*.conf; do
		case ${_cs_f#"$EC_CONF_DIR"/} in *[!a-z0-9.-]*) continue ;; esac
		[ -f "$_cs_f" ] && printf '%s\n' "$_cs_f"
	done
}

# ec_find_conf MAC: set C_PATH/C_LINE/C_OWN_ADDR/C_OWN_LINK for the config file of this MAC
# (C_PATH empty if none); return 1 if several files name it.
ec_find_conf() {
	C_PATH='' C_LINE='' C_OWN_ADDR=0 C_OWN_LINK=0
	_fc_ifs=$IFS
	IFS=$EC_NL
	for _fc_f in $(ec_confs); do
		IFS=$_fc_ifs
		_fc_line=$(ec_conf_line "$_fc_f") || continue
		# shellcheck disable=SC2086 # split the config line into its fields
		set -- $_fc_line
		[ "$1" = "$R_MAC" ] || continue
		if [ -n "$C_PATH" ]; then
			EC_BAD="both $C_PATH and $_fc_f configure MAC $R_MAC"
			return 1
		fi
		C_PATH=$_fc_f C_LINE="$1 $2 $3 $4 $5 $6 $7 $8" C_OWN_ADDR=$9 C_OWN_LINK=${10}
	done
	IFS=$_fc_ifs
	return 0
}

# ec_conflicts: another ENI's config uses this table, priority or IP (error), or a config is invalid.
ec_conflicts() {
	_co_rc=0
	_co_ifs=$IFS
	IFS=$EC_NL
	for _co_f in $(ec_confs); do
		IFS=$_co_ifs
		if ! _co_line=$(ec_conf_line "$_co_f"); then
			ec_err "config $_co_f is invalid ($_co_line); fix or delete it"
			_co_rc=1
			continue
		fi
		# shellcheck disable=SC2086 # split the config line into its fields
		set -- $_co_line
		[ "$1" = "$R_MAC" ] && continue
		if [ "$6" = "$R_TABLE" ] || [ "$7" = "$R_PRIO" ] || [ "$2" = "$R_IP" ]; then
			ec_err "table $R_TABLE / priority $R_PRIO / ip $R_IP collide with $_co_f (MAC $1, table $6, priority $7, ip $2)"
			_co_rc=1
		fi
	done
	IFS=$_co_ifs
	return "$_co_rc"
}

# ---------------------------------------------------------------------------- kernel state

# ec_find_dev MAC: EC_DEV = the one interface with this MAC (0), none (1) or several (2).
# VLAN, bridge, bond, team, macvlan and ipvlan devices that share the MAC are not candidates.
ec_find_dev() {
	EC_DEV='' _fd_n=0 _fd_phys='' _fd_nphys=0
	for _fd_p in /sys/class/net/*; do
		[ -r "$_fd_p/address" ] || continue
		_fd_a=$(cat "$_fd_p/address" 2>/dev/null) || continue
		[ "$_fd_a" = "$1" ] || continue
		[ -d "$_fd_p/bridge" ] && continue
		[ -d "$_fd_p/bonding" ] && continue
		case $(cat "$_fd_p/uevent" 2>/dev/null) in
		*DEVTYPE=vlan* | *DEVTYPE=bridge* | *DEVTYPE=bond* | *DEVTYPE=team* | *DEVTYPE=macvlan* | *DEVTYPE=macvtap* | *DEVTYPE=ipvlan*) continue ;;
		esac
		_fd_n=$((_fd_n + 1))
		EC_DEV=${_fd_p##*/}
		if [ -e "$_fd_p/device" ]; then
			_fd_nphys=$((_fd_nphys + 1))
			_fd_phys=$EC_DEV
		fi
	done
	[ "$_fd_n" -eq 0 ] && return 1
	[ "$_fd_n" -eq 1 ] && return 0
	if [ "$_fd_nphys" -eq 1 ]; then
		EC_DEV=$_fd_phys
		return 0
	fi
	EC_DEV=''
	return 2
}

# ec_wait_dev MAC SECONDS: ec_find_dev, polling once a second for a hot-plugged NIC.
ec_wait_dev() {
	_wd_left=$2
	while :; do
		ec_find_dev "$1"
		_wd_rc=$?
		[ "$_wd_rc" -ne 1 ] && return "$_wd_rc"
		[ "$_wd_left" -gt 0 ] || return 1
		sleep 1
		_wd_left=$((_wd_left - 1))
	done
}

ec_local_macs() {
	cat /sys/class/net/*/address 2>/dev/null | grep -v '^00:00:00:00:00:00$' | sort -u | tr '\n' ' '
}

ec_link_up() {
	case $(ip -o link show dev "$1" 2>/dev/null) in
	*'<UP,'* | *'<UP>'* | *',UP,'* | *',UP>'*) return 0 ;;
	esac
	return 1
}

ec_has_addr() {
	ip -4 -o addr show dev "$1" 2>/dev/null |
		awk -v ip="$2" '$3 == "inet" { split($4, a, "/"); if (a[1] == ip) f = 1 } END { exit !f }'
}

# ec_routes ARGS...: "ip -4 route show ARGS" as lines "TYPE DST VIA DEV SRC METRIC PROTO"
# ('-' for a field that is absent or hidden by the filter; DEV '*' for a multipath route).
ec_routes() {
	ip -4 route show "$@" 2>/dev/null | awk '
		function out() { if (have) print type, dst, via, dev, src, metric, proto; have = 0 }
		/^[ \t]/ { if ($1 == "nexthop") dev = "*"; next }
		{
			out(); have = 1; type = "unicast"; i = 1
			if ($1 ~ /^(unicast|unreachable|blackhole|prohibit|throw|local|broadcast|anycast|multicast|nat)$/) { type = $1; i = 2 }
			dst = $i; via = "-"; dev = "-"; src = "-"; metric = 0; proto = "-"
			for (; i < NF; i++) {
				if ($i == "via") via = $(i + 1)
				else if ($i == "dev") dev = $(i + 1)
				else if ($i == "src") src = $(i + 1)
				else if ($i == "metric") metric = $(i + 1)
				else if ($i == "proto") proto = $(i + 1)
			}
		}
		END { out() }'
}

# ec_table_state: EC_T_SUBNET / EC_T_DEFAULT (1 if our route is in table R_TABLE), EC_T_EXTRA
# (routes in the table that are not those two).
ec_table_state() {
	_ts_all=$(ec_routes table "$R_TABLE")
	_ts_ours=$(ec_routes table "$R_TABLE" proto "$EC_PROTO")
	EC_T_SUBNET=0 EC_T_DEFAULT=0
	if printf '%s\n' "$_ts_ours" | awk -v n="$R_NET" -v d="$EC_DEV" -v s="$R_IP" \
		'$1 == "unicast" && $2 == n && $3 == "-" && $4 == d && $5 == s && $6 == 0 { f = 1 } END { exit !f }'; then
		EC_T_SUBNET=1
	fi
	if printf '%s\n' "$_ts_ours" | awk -v g="$R_GW" -v d="$EC_DEV" \
		'$1 == "unicast" && $2 == "default" && $3 == g && $4 == d && $6 == 0 { f = 1 } END { exit !f }'; then
		EC_T_DEFAULT=1
	fi
	EC_T_EXTRA=$(($(printf '%s' "$_ts_all" | grep -c .) - EC_T_SUBNET - EC_T_DEFAULT))
}

# ec_rules: "ip -4 rule show" as "PRIORITY SELECTOR..." lines.
ec_rules() {
	ip -4 rule show 2>/dev/null | tr '\t' ' ' |
		sed -n 's/^\([0-9][0-9]*\): *\(.*[^ ]\) *$/\1 \2/p' | sed 's/ proto [^ ]*$//'
}

# ec_rule_state: EC_R_OURS (count of "PRIO from IP lookup TABLE"), EC_R_OTHER (other rules at PRIO),
# EC_R_ELSEWHERE (priorities of other rules that look up TABLE).
ec_rule_state() {
	_rs_all=$(ec_rules)
	_rs_ours="$R_PRIO from $R_IP lookup $R_TABLE"
	EC_R_OURS=$(printf '%s\n' "$_rs_all" | grep -c -x -F "$_rs_ours")
	EC_R_OTHER=$(printf '%s\n' "$_rs_all" | awk -v p="$R_PRIO" -v o="$_rs_ours" '$1 == p && $0 != o' | grep -c .)
	EC_R_ELSEWHERE=$(printf '%s\n' "$_rs_all" | awk -v p="$R_PRIO" -v t="$R_TABLE" '
		$1 != p { for (i = 2; i < NF; i++) if (($i == "lookup" || $i == "table") && $(i + 1) == t) { print $1; break } }' |
		tr '\n' ' ')
	EC_R_ELSEWHERE=${EC_R_ELSEWHERE% }
}

# ec_main_defaults: EC_BEST (lowest metric of a main-table default route not on EC_DEV, '' if
# none), EC_BAD_METRICS (metrics of EC_DEV's default routes that are equal or better than EC_BEST),
# EC_GOOD_ON_DEV (1 if EC_DEV keeps a default route with a worse metric).
ec_main_defaults() {
	_md_all=$(ec_routes table main exact 0.0.0.0/0 | awk '$1 == "unicast"')
	EC_BEST=$(printf '%s\n' "$_md_all" | awk -v d="$EC_DEV" '
		NF && $4 != d { if (b == "" || $6 + 0 < b + 0) b = $6 } END { print b }')
	EC_BAD_METRICS=$(printf '%s\n' "$_md_all" | awk -v d="$EC_DEV" -v b="$EC_BEST" '
		NF && $4 == d && (b == "" || $6 + 0 <= b + 0) { print $6 }' | tr '\n' ' ')
	EC_BAD_METRICS=${EC_BAD_METRICS% }
	EC_GOOD_ON_DEV=0
	if [ -n "$EC_BEST" ] && printf '%s\n' "$_md_all" | awk -v d="$EC_DEV" -v b="$EC_BEST" \
		'NF && $4 == d && $6 + 0 > b + 0 { f = 1 } END { exit !f }'; then
		EC_GOOD_ON_DEV=1
	fi
}

# ec_route_dev ARGS...: the output device of "ip -4 route get ARGS" ('' if there is no route).
ec_route_dev() {
	ip -4 route get "$@" 2>/dev/null | awk '{ for (i = 1; i < NF; i++) if ($i == "dev") { print $(i + 1); exit } }'
}

ec_rp_filter() {
	_rp_all=$(cat /proc/sys/net/ipv4/conf/all/rp_filter 2>/dev/null) || _rp_all=0
	_rp_dev=$(cat "/proc/sys/net/ipv4/conf/$1/rp_filter" 2>/dev/null) || _rp_dev=0
	ec_uint "$_rp_all" || _rp_all=0
	ec_uint "$_rp_dev" || _rp_dev=0
	if [ "$_rp_all" -gt "$_rp_dev" ]; then echo "$_rp_all"; else echo "$_rp_dev"; fi
}

# ec_inspect: compare the kernel with the row for EC_DEV; every difference goes through ec_diff.
ec_inspect() {
	EC_RP=$(ec_rp_filter "$EC_DEV")
	_in_up=1 _in_addr=1
	if ! ec_link_up "$EC_DEV"; then
		ec_diff "link: $EC_DEV is down"
		_in_up=0
	fi
	if ! ec_has_addr "$EC_DEV" "$R_IP"; then
		ec_diff "address: $R_IP/$R_PREFIX is missing on $EC_DEV"
		_in_addr=0
	fi
	ec_table_state
	[ "$EC_T_SUBNET" = 1 ] || ec_diff "table $R_TABLE: route \"$R_NET dev $EC_DEV proto $EC_PROTO scope link src $R_IP\" is missing"
	[ "$EC_T_DEFAULT" = 1 ] || ec_diff "table $R_TABLE: route \"default via $R_GW dev $EC_DEV proto $EC_PROTO\" is missing"
	[ "$EC_T_EXTRA" -le 0 ] || ec_diff "table $R_TABLE: $EC_T_EXTRA route(s) that egressctl did not add"
	ec_rule_state
	[ "$EC_R_OURS" -ge 1 ] || ec_diff "rule \"$R_PRIO: from $R_IP lookup $R_TABLE\" is missing"
	[ "$EC_R_OTHER" -eq 0 ] || ec_diff "priority $R_PRIO: $EC_R_OTHER other rule(s)"
	[ -z "$EC_R_ELSEWHERE" ] || ec_diff "table $R_TABLE is also looked up by rule(s) at priority $EC_R_ELSEWHERE"
	ec_main_defaults
	if [ -n "$EC_BAD_METRICS" ]; then
		if [ -n "$EC_BEST" ]; then
			ec_diff "main table: default route on $EC_DEV (metric $EC_BAD_METRICS) is not worse than the primary's (metric $EC_BEST)"
		else
			ec_diff "main table: the only default route is on $EC_DEV; new connections would leave via the ENI"
		fi
	else
		_in_egress=$(ec_route_dev "$EC_PROBE")
		[ "$_in_egress" != "$EC_DEV" ] || ec_diff "egress: new connections to $EC_PROBE leave via $EC_DEV, not the primary NIC"
	fi
	if [ "$_in_addr" = 1 ]; then
		_in_reply=$(ec_route_dev "$EC_PROBE" from "$R_IP")
		[ "$_in_reply" = "$EC_DEV" ] || ec_diff "reply path: traffic from $R_IP leaves via ${_in_reply:-nothing}, not $EC_DEV"
	fi
	if [ "$_in_up" = 1 ] && [ "$_in_addr" = 1 ] && ! ip -4 route get "$R_IP" from "$EC_PROBE" iif "$EC_DEV" >/dev/null 2>&1; then
		ec_diff "rp_filter=$EC_RP: reverse-path check drops traffic to $R_IP arriving on $EC_DEV"
	fi
}

# ---------------------------------------------------------------------------- changes

ec_ensure_kernel() {
	if ! ec_link_up "$EC_DEV"; then
		ec_do "link $EC_DEV set up" ip link set dev "$EC_DEV" up
	fi
	if ! ec_has_addr "$EC_DEV" "$R_IP"; then
		if _ka_out=$(ip -4 addr add "$R_IP/$R_PREFIX" dev "$EC_DEV" 2>&1); then
			ec_change "address $R_IP/$R_PREFIX added to $EC_DEV"
		elif ! ec_has_addr "$EC_DEV" "$R_IP"; then # lost a race with a DHCP client: fine if it is there now
			ec_err "address $R_IP/$R_PREFIX added to $EC_DEV: $(ec_oneline "$_ka_out")"
		fi
	fi
	ec_table_state
	if [ "$EC_T_EXTRA" -gt 0 ]; then
		ec_do "table $R_TABLE flushed ($EC_T_EXTRA route(s) egressctl did not add)" ip -4 route flush table "$R_TABLE"
		EC_T_SUBNET=0 EC_T_DEFAULT=0
	fi
	if [ "$EC_T_SUBNET" != 1 ]; then
		ec_do "table $R_TABLE: route $R_NET dev $EC_DEV src $R_IP" \
			ip -4 route replace "$R_NET" dev "$EC_DEV" proto "$EC_PROTO" scope link src "$R_IP" table "$R_TABLE"
	fi
	if [ "$EC_T_DEFAULT" != 1 ]; then
		ec_do "table $R_TABLE: route default via $R_GW dev $EC_DEV" \
			ip -4 route replace default via "$R_GW" dev "$EC_DEV" proto "$EC_PROTO" table "$R_TABLE"
	fi
	ec_rule_state
	if [ "$EC_R_OTHER" -gt 0 ]; then
		_ek_n=0
		while [ "$_ek_n" -lt 64 ] && ec_rules | awk -v p="$R_PRIO" '$1 == p { f = 1 } END { exit !f }'; do
			ec_do "rule at priority $R_PRIO deleted (not egressctl's)" ip -4 rule del priority "$R_PRIO" || break
			_ek_n=$((_ek_n + 1))
		done
		EC_R_OURS=0
	fi
	for _ek_p in $EC_R_ELSEWHERE; do
		ec_uint "$_ek_p" && ec_do "rule at priority $_ek_p looking up table $R_TABLE deleted" \
			ip -4 rule del priority "$_ek_p" table "$R_TABLE"
	done
	if [ "$EC_R_OURS" -lt 1 ]; then
		ec_do "rule $R_PRIO: from $R_IP lookup $R_TABLE" \
			ip -4 rule add from "$R_IP/32" lookup "$R_TABLE" priority "$R_PRIO"
	fi
	ec_main_defaults
	if [ -n "$EC_BAD_METRICS" ] && [ -z "$EC_BEST" ]; then
		ec_err "main table: the only default route is on $EC_DEV; not touching it (new connections would have no route)"
	elif [ -n "$EC_BAD_METRICS" ]; then
		for _ek_m in $EC_BAD_METRICS; do
			ec_uint "$_ek_m" || continue
			ec_do "main table: default route on $EC_DEV with metric $_ek_m deleted (primary has $EC_BEST)" \
				ip -4 route del default dev "$EC_DEV" metric "$_ek_m" table main
		done
		if [ "$EC_GOOD_ON_DEV" != 1 ]; then
			_ek_m=$((EC_BEST + 1))
			while ec_routes table main exact 0.0.0.0/0 metric "$_ek_m" | grep -q .; do
				_ek_m=$((_ek_m + 1))
			done
			ec_do "main table: default via $R_GW dev $EC_DEV re-added with metric $_ek_m (behind the primary)" \
				ip -4 route add default via "$R_GW" dev "$EC_DEV" proto "$EC_PROTO" metric "$_ek_m" table main
		fi
	fi
}

# ec_undo_kernel routing|all: delete what apply added for the row in R_* (own flags in R_OWN_*).
ec_undo_kernel() {
	_uk_n=0
	while [ "$_uk_n" -lt 64 ] && ec_rules | grep -q -x -F "$R_PRIO from $R_IP lookup $R_TABLE"; do
		ec_do "rule $R_PRIO: from $R_IP lookup $R_TABLE deleted" \
			ip -4 rule del from "$R_IP/32" lookup "$R_TABLE" priority "$R_PRIO" || break
		_uk_n=$((_uk_n + 1))
	done
	if ec_routes table "$R_TABLE" proto "$EC_PROTO" | grep -q .; then
		ec_do "table $R_TABLE: egressctl's routes deleted" ip -4 route flush table "$R_TABLE" proto "$EC_PROTO"
	fi
	[ -n "$EC_DEV" ] || return 0
	for _uk_m in $(ec_routes table main exact 0.0.0.0/0 proto "$EC_PROTO" | awk -v d="$EC_DEV" '$4 == d { print $6 }'); do
		ec_uint "$_uk_m" || continue
		ec_do "main table: egressctl's default route on $EC_DEV (metric $_uk_m) deleted" \
			ip -4 route del default dev "$EC_DEV" metric "$_uk_m" proto "$EC_PROTO" table main
	done
	[ "$1" = all ] || return 0
	if [ "$R_OWN_ADDR" = 1 ] && ec_has_addr "$EC_DEV" "$R_IP"; then
		ec_do "address $R_IP/$R_PREFIX deleted from $EC_DEV" ip -4 addr del "$R_IP/$R_PREFIX" dev "$EC_DEV"
	fi
	if [ "$R_OWN_LINK" = 1 ] && ec_link_up "$EC_DEV"; then
		ec_do "link $EC_DEV set down" ip link set dev "$EC_DEV" down
	fi
}

# ec_put PATH MODE TEXT WHAT: make PATH hold TEXT (plus a newline) with MODE; atomic, and
# untouched when it already does.
ec_put() {
	if [ -f "$1" ] && [ ! -L "$1" ] && [ "$(cat "$1" 2>/dev/null; printf x)" = "$3${EC_NL}x" ]; then
		chmod "$2" "$1" 2>/dev/null
		return 0
	fi
	_pt_dir=${1%/*}
	if [ ! -d "$_pt_dir" ] && ! mkdir -p "$_pt_dir"; then
		ec_err "$4: cannot create $_pt_dir"
		return 1
	fi
	_pt_tmp=$_pt_dir/.egressctl.$$.tmp
	if printf '%s\n' "$3" >"$_pt_tmp" && chmod "$2" "$_pt_tmp" && mv -f "$_pt_tmp" "$1"; then
		command -v restorecon >/dev/null 2>&1 && restorecon "$1" >/dev/null 2>&1
		ec_change "$4 written: $1"
		[ "$1" = "$EC_UNIT" ] && EC_RELOAD=1
		return 0
	fi
	rm -f "$_pt_tmp"
	ec_err "$4: cannot write $1"
	return 1
}

ec_wants_ok() { [ -L "$EC_WANTS" ] && [ "$(readlink "$EC_WANTS" 2>/dev/null)" = "$EC_UNIT" ]; }

ec_install_files() {
	ec_put "$EC_CONF_PATH" 644 "$(ec_conf_text)" config
	if [ -n "${EGRESSCTL_LIB-}" ]; then
		ec_put "$EC_LIB" 755 "$EGRESSCTL_LIB" 'routing script'
	elif [ ! -f "$EC_LIB" ]; then
		ec_err "$EC_LIB is missing; run the script rendered by egressctl to install it"
	fi
	ec_put "$EC_UNIT" 644 "$EC_UNIT_TEXT" 'systemd unit'
	if ! ec_wants_ok; then
		mkdir -p "$EC_WANTS_DIR" && ec_do "systemd unit enabled: $EC_WANTS" ln -sf "$EC_UNIT" "$EC_WANTS"
	fi
	[ -d "$EC_NM_DIR" ] && ec_put "$EC_NM_HOOK" 755 "$EC_NM_TEXT" 'NetworkManager dispatcher hook'
	[ -d "$EC_ND_DIR" ] && ec_put "$EC_ND_HOOK" 755 "$EC_ND_TEXT" 'networkd-dispatcher hook'
	return 0
}

ec_check_file() { # PATH TEXT WHAT
	if [ ! -f "$1" ]; then
		ec_diff "persistence: $3 $1 is missing"
	elif [ "$(cat "$1" 2>/dev/null; printf x)" != "$2${EC_NL}x" ]; then
		ec_diff "persistence: $3 $1 differs from what egressctl writes"
	fi
}

ec_check_files() {
	if [ -n "${EGRESSCTL_LIB-}" ]; then
		ec_check_file "$EC_LIB" "$EGRESSCTL_LIB" 'routing script'
	elif [ ! -f "$EC_LIB" ]; then
		ec_diff "persistence: routing script $EC_LIB is missing"
	fi
	ec_check_file "$EC_UNIT" "$EC_UNIT_TEXT" 'systemd unit'
	ec_wants_ok || ec_diff "persistence: $EC_WANTS does not link to $EC_UNIT (unit not enabled)"
	[ -d "$EC_NM_DIR" ] && ec_check_file "$EC_NM_HOOK" "$EC_NM_TEXT" 'NetworkManager dispatcher hook'
	[ -d "$EC_ND_DIR" ] && ec_check_file "$EC_ND_HOOK" "$EC_ND_TEXT" 'networkd-dispatcher hook'
	return 0
}

ec_remove_shared() {
	for _rs_f in "$EC_WANTS" "$EC_UNIT" "$EC_NM_HOOK" "$EC_ND_HOOK" "$EC_LIB"; do
		if [ -e "$_rs_f" ] || [ -L "$_rs_f" ]; then
			ec_do "deleted $_rs_f" rm -f "$_rs_f"
			[ "$_rs_f" = "$EC_UNIT" ] && EC_RELOAD=1
		fi
	done
	for _rs_d in "$EC_LIB_DIR" "$EC_CONF_DIR"; do
		[ -d "$_rs_d" ] && rmdir "$_rs_d" 2>/dev/null && ec_change "deleted empty directory $_rs_d"
	done
	return 0
}

# ---------------------------------------------------------------------------- one ENI per mode

ec_item_begin() {
	E_CHANGES='' E_DIFFS='' E_ERRS='' EC_DEV='' EC_RP='' EC_VERIFYING=0
}

# ec_item_end: record the result of the row in R_* (status, JSON) and add it to the totals.
ec_item_end() {
	if [ -n "$E_ERRS" ]; then
		_ie_status=error
	elif [ -n "$E_DIFFS" ]; then
		_ie_status=drift
		[ "$EC_MODE" = check ] || _ie_status=error
	elif [ -n "$E_CHANGES" ]; then
		_ie_status=changed
	else
		_ie_status=ok
	fi
	_ie_eni=null
	[ "$R_ENI" = - ] || _ie_eni="\"$R_ENI\""
	_ie_dev=null
	[ -n "$EC_DEV" ] && _ie_dev=$(ec_json_str "$EC_DEV")
	_ie_rp=null
	ec_uint "$EC_RP" && _ie_rp=$EC_RP
	_ie_scalars=$(printf '"eni":%s,"mac":"%s","ip":"%s","prefix":%d,"gateway":"%s","table":%d,"priority":%d,"dev":%s,"rp_filter":%s' \
		"$_ie_eni" "$R_MAC" "$R_IP" "$R_PREFIX" "$R_GW" "$R_TABLE" "$R_PRIO" "$_ie_dev" "$_ie_rp")
	_ie_json=$(printf '{"status":"%s",%s,"changes":%s,"differences":%s,"errors":%s}' "$_ie_status" "$_ie_scalars" \
		"$(ec_json_list "$E_CHANGES")" "$(ec_json_list "$E_DIFFS")" "$(ec_json_list "$E_ERRS")")
	EC_NITEMS=$((EC_NITEMS + 1))
	[ "$EC_NITEMS" -eq 1 ] && EC_ONE=$_ie_scalars
	EC_ITEMS=$EC_ITEMS${EC_ITEMS:+,}$_ie_json
	EC_ALL_CHANGES=$EC_ALL_CHANGES$E_CHANGES
	EC_ALL_DIFFS=$EC_ALL_DIFFS$E_DIFFS
	EC_ALL_ERRS=$EC_ALL_ERRS$E_ERRS
	case $_ie_status in
	error) EC_ANY_ERROR=1 ;;
	drift) EC_ANY_DRIFT=1 ;;
	changed) EC_ANY_CHANGED=1 ;;
	esac
}

# ec_apply_row full|kernel: make the kernel (and, for full, the files) match the row in R_*.
ec_apply_row() {
	ec_conflicts || return 0
	_ar_wait=$R_WAIT
	[ "$EC_NOWAIT" = 1 ] && _ar_wait=0
	ec_wait_dev "$R_MAC" "$_ar_wait"
	case $? in
	1)
		ec_err "no network interface with MAC $R_MAC (waited ${_ar_wait}s)"
		return 0
		;;
	2)
		ec_err "several network interfaces have MAC $R_MAC"
		return 0
		;;
	esac
	if [ "$1" = full ]; then
		if ! ec_find_conf "$R_MAC"; then
			ec_err "$EC_BAD"
			return 0
		fi
		EC_CONF_PATH=$(ec_conf_path)
		if [ -z "$C_PATH" ]; then
			# First apply for this ENI: the table and priority must be free, and what the image did
			# (address, link state) is remembered so that remove undoes only what apply adds.
			ec_table_state
			ec_rule_state
			if [ "$EC_T_EXTRA" -gt 0 ] || [ "$EC_R_OTHER" -gt 0 ] || [ -n "$EC_R_ELSEWHERE" ]; then
				ec_err "table $R_TABLE or priority $R_PRIO is already used by something else; choose other numbers"
				return 0
			fi
			R_OWN_ADDR=0 R_OWN_LINK=0
			ec_has_addr "$EC_DEV" "$R_IP" || R_OWN_ADDR=1
			ec_link_up "$EC_DEV" || R_OWN_LINK=1
		else
			R_OWN_ADDR=$C_OWN_ADDR R_OWN_LINK=$C_OWN_LINK
			if [ "$C_LINE" != "$R_LINE" ]; then
				# The ENI's values changed: undo the old routing before applying the new one.
				_ar_new=$R_LINE
				_ar_new_ip=$R_IP
				ec_set_row "$C_LINE"
				ec_undo_kernel routing
				if [ "$R_OWN_ADDR" = 1 ] && [ "$R_IP" != "$_ar_new_ip" ]; then
					ec_has_addr "$EC_DEV" "$R_IP" &&
						ec_do "old address $R_IP/$R_PREFIX deleted from $EC_DEV" ip -4 addr del "$R_IP/$R_PREFIX" dev "$EC_DEV"
				fi
				ec_set_row "$_ar_new"
			fi
		fi
		ec_install_files
		if [ -n "$C_PATH" ] && [ "$C_PATH" != "$EC_CONF_PATH" ]; then
			ec_do "deleted old config $C_PATH" rm -f "$C_PATH"
		fi
	fi
	ec_ensure_kernel
	EC_VERIFYING=1
	ec_inspect
	EC_VERIFYING=0
}

ec_check_row() { # rows|confs
	ec_find_dev "$R_MAC"
	case $? in
	1) ec_diff "no network interface with MAC $R_MAC" ;;
	2) ec_diff "several network interfaces have MAC $R_MAC" ;;
	esac
	if [ "$1" = rows ]; then
		for _ck_f in $(ec_confs); do
			_ck_why=$(ec_conf_line "$_ck_f") || ec_diff "config: $_ck_f is invalid ($_ck_why)"
		done
		if ! ec_find_conf "$R_MAC"; then
			ec_diff "config: $EC_BAD"
		elif [ -z "$C_PATH" ]; then
			ec_diff "config: no file in $EC_CONF_DIR for MAC $R_MAC"
		elif [ "$C_LINE" != "$R_LINE" ]; then
			ec_diff "config: $C_PATH has \"$C_LINE\", this script has \"$R_LINE\""
		fi
	fi
	ec_check_files
	[ -n "$EC_DEV" ] && ec_inspect
	return 0
}

ec_remove_row() {
	ec_find_dev "$R_MAC"
	R_OWN_ADDR=0 R_OWN_LINK=0
	if ! ec_find_conf "$R_MAC"; then
		ec_err "$EC_BAD"
		return 0
	fi
	_rr_row=$R_LINE
	if [ -n "$C_PATH" ]; then
		R_OWN_ADDR=$C_OWN_ADDR R_OWN_LINK=$C_OWN_LINK
		if [ "$C_LINE" != "$R_LINE" ]; then
			ec_set_row "$C_LINE"
			ec_undo_kernel all
			ec_set_row "$_rr_row"
		fi
	fi
	ec_undo_kernel all
	[ -n "$C_PATH" ] && ec_do "deleted config $C_PATH" rm -f "$C_PATH"
	return 0
}

# ---------------------------------------------------------------------------- main

ec_lock() {
	command -v flock >/dev/null 2>&1 || return 0
	[ -f "$EC_LIB" ] || return 0
	exec 9<"$EC_LIB"
	flock -w 60 9 || ec_say "could not lock $EC_LIB within 60s; going on"
}

ec_finish() {
	if [ -n "$EC_TOP_ERRS" ] || [ "$EC_ANY_ERROR" = 1 ]; then
		_fi_status=error
	elif [ "$EC_ANY_DRIFT" = 1 ]; then
		_fi_status=drift
	elif [ "$EC_ANY_CHANGED" = 1 ]; then
		_fi_status=changed
	else
		_fi_status=ok
	fi
	if [ "$EC_NITEMS" -ne 1 ]; then
		EC_ONE='"eni":null,"mac":null,"ip":null,"prefix":null,"gateway":null,"table":null,"priority":null,"dev":null,"rp_filter":null'
	fi
	ec_say "$EC_MODE: $_fi_status ($EC_NITEMS ENI(s))"
	printf 'EGRESSCTL_RESULT {"version":%d,"mode":"%s","status":"%s",%s,"changes":%s,"differences":%s,"errors":%s,"items":[%s]}\n' \
		"$EC_VERSION" "$EC_MODE" "$_fi_status" "$EC_ONE" "$(ec_json_list "$EC_ALL_CHANGES")" \
		"$(ec_json_list "$EC_ALL_DIFFS")" "$(ec_json_list "$EC_TOP_ERRS$EC_ALL_ERRS")" "$EC_ITEMS"
	case $_fi_status in ok | changed) exit 0 ;; esac
	exit 1
}

ec_top_err() {
	ec_say "error: $1"
	EC_TOP_ERRS=$EC_TOP_ERRS$1$EC_NL
}

# ec_parse_rows: validate every row of $EGRESSCTL_ROWS into EC_ROWS (one row per line); a row that
# does not validate stops everything before anything is changed.
ec_parse_rows() {
	EC_ROWS='' EC_NROWS=0 EC_MAXWAIT=0
	_pr_ifs=$IFS
	IFS=$EC_NL
	set -f
	for _pr_line in ${EGRESSCTL_ROWS-}; do
		IFS=$_pr_ifs
		# shellcheck disable=SC2086 # split the row into its fields
		set -- $_pr_line
		[ $# -eq 0 ] && continue
		EC_NROWS=$((EC_NROWS + 1))
		if ! ec_row "$@"; then
			EC_BAD="row $EC_NROWS: $EC_BAD"
			set +f
			return 1
		fi
		case $EC_NL$EC_ROWS in *"$EC_NL$R_MAC "*)
			EC_BAD="row $EC_NROWS: mac $R_MAC appears twice"
			set +f
			return 1
			;;
		esac
		EC_ROWS=$EC_ROWS$R_LINE$EC_NL
		[ "$R_WAIT" -gt "$EC_MAXWAIT" ] && EC_MAXWAIT=$R_WAIT
	done
	set +f
	IFS=$_pr_ifs
	return 0
}

# ec_select_rows: EC_SEL = the rows whose MAC is on this machine or has a config file here; apply
# waits up to the largest WAIT_S for a hot-plugged NIC when none is there yet.
ec_select_rows() {
	_sr_left=$EC_MAXWAIT
	[ "$EC_MODE" = apply ] || _sr_left=0
	_sr_conf_macs=''
	for _sr_f in $(ec_confs); do
		_sr_l=$(ec_conf_line "$_sr_f") && _sr_conf_macs=$_sr_conf_macs${_sr_l%% *}$EC_NL
	done
	while :; do
		EC_SEL=''
		_sr_known=$EC_NL$_sr_conf_macs$(ec_local_macs | tr ' ' '\n')$EC_NL
		_sr_ifs=$IFS
		IFS=$EC_NL
		for _sr_line in $EC_ROWS; do
			IFS=$_sr_ifs
			case $_sr_known in *"$EC_NL${_sr_line%% *}$EC_NL"*) EC_SEL=$EC_SEL$_sr_line$EC_NL ;; esac
		done
		IFS=$_sr_ifs
		[ -n "$EC_SEL" ] && return 0
		[ "$_sr_left" -gt 0 ] || return 1
		sleep 1
		_sr_left=$((_sr_left - 1))
	done
}

# ec_for_rows LIST ACTION: run ACTION (apply|reapply|check-rows|check-confs|remove) for every row
# line in LIST, loaded into R_*.
ec_for_rows() {
	_fr_ifs=$IFS
	IFS=$EC_NL
	for _fr_line in $1; do
		IFS=$_fr_ifs
		ec_item_begin
		ec_set_row "$_fr_line"
		R_OWN_ADDR=0 R_OWN_LINK=0
		case $2 in
		apply) ec_apply_row full ;;
		reapply) ec_apply_row kernel ;;
		check-rows) ec_check_row rows ;;
		check-confs) ec_check_row confs ;;
		remove) ec_remove_row ;;
		esac
		ec_item_end
	done
	IFS=$_fr_ifs
}

# ec_conf_rows: EC_CONF_ROWS = the rows of every valid config file; invalid ones are errors.
ec_conf_rows() {
	EC_CONF_ROWS=''
	for _cr_f in $(ec_confs); do
		if _cr_line=$(ec_conf_line "$_cr_f"); then
			EC_CONF_ROWS=$EC_CONF_ROWS${_cr_line% * *}$EC_NL
		else
			ec_top_err "config $_cr_f is invalid ($_cr_line); ignored"
		fi
	done
}

ec_main() {
	EC_MODE=${1-} EC_NOWAIT=0 EC_RELOAD=0 EC_TOP_ERRS='' EC_NITEMS=0 EC_ITEMS='' EC_ONE=''
	EC_ALL_CHANGES='' EC_ALL_DIFFS='' EC_ALL_ERRS='' EC_ANY_ERROR=0 EC_ANY_DRIFT=0 EC_ANY_CHANGED=0
	EC_VERIFYING=0 E_CHANGES='' E_DIFFS='' E_ERRS='' R_OWN_ADDR=0 R_OWN_LINK=0
	case $EC_MODE in
	apply | check | remove | reapply) ;;
	*)
		EC_MODE=error
		ec_top_err "usage: egress-routing.sh apply|check|remove|reapply [--no-wait]"
		ec_finish
		;;
	esac
	[ "${2-}" = --no-wait ] && EC_NOWAIT=1
	if ! command -v ip >/dev/null 2>&1; then
		ec_top_err "the ip command (iproute2) is not installed"
		ec_finish
	fi
	if [ "$EC_MODE" != check ] && [ "$(id -u)" != 0 ]; then
		ec_top_err "$EC_MODE needs root"
		ec_finish
	fi
	[ "$EC_MODE" = check ] || ec_lock
	if [ "$EC_MODE" = reapply ] || { [ "$EC_MODE" = check ] && [ -z "$(printf '%s' "${EGRESSCTL_ROWS-}" | tr -d ' \t\n')" ]; }; then
		ec_conf_rows
		if [ "$EC_MODE" = reapply ]; then
			ec_for_rows "$EC_CONF_ROWS" reapply
		else
			ec_for_rows "$EC_CONF_ROWS" check-confs
		fi
		ec_finish
	fi
	if ! ec_parse_rows; then
		ec_top_err "invalid script values ($EC_BAD); nothing changed"
		ec_finish
	fi
	if [ "$EC_NROWS" -eq 0 ]; then
		ec_top_err "$EC_MODE needs rows (EGRESSCTL_ROWS); run the script rendered by egressctl"
		ec_finish
	fi
	if ! ec_select_rows; then
		if [ "$EC_MODE" = remove ]; then
			ec_say "none of the $EC_NROWS ENI(s) in this script is present or configured here; nothing to remove"
		else
			ec_top_err "none of the $EC_NROWS MAC(s) in this script is present on this instance (local MACs: $(ec_local_macs))"
		fi
		ec_finish
	fi
	case $EC_MODE in
	apply) ec_for_rows "$EC_SEL" apply ;;
	check) ec_for_rows "$EC_SEL" check-rows ;;
	remove)
		ec_for_rows "$EC_SEL" remove
		if [ -z "$(ec_confs)" ]; then
			ec_item_begin
			ec_remove_shared
			EC_ALL_CHANGES=$EC_ALL_CHANGES$E_CHANGES
			EC_ALL_ERRS=$EC_ALL_ERRS$E_ERRS
			[ -n "$E_ERRS" ] && EC_ANY_ERROR=1
			[ -n "$E_CHANGES" ] && EC_ANY_CHANGED=1
		fi
		;;
	esac
	if [ "$EC_RELOAD" = 1 ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
		systemctl daemon-reload >/dev/null 2>&1 || ec_say "systemctl daemon-reload failed"
	fi
	ec_finish
}

ec_main "$@"
