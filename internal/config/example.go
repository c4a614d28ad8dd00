package config

import (
	"fmt"
	"net"
	"strings"
)

// Example renders a commented tern.toml for a host, listening on ip ("" =
// all addresses) with the standard ports.
func Example(hostname, ip string) string {
	addr := func(port int) string { return fmt.Sprintf("%q", net.JoinHostPort(ip, fmt.Sprint(port))) }
	if ip == "" {
		addr = func(port int) string { return fmt.Sprintf("%q", fmt.Sprintf(":%d", port)) }
	}
	r := strings.NewReplacer(
		"{HOSTNAME}", hostname,
		"{SMTP}", addr(25), "{SUBM}", addr(587), "{SUBTLS}", addr(465),
		"{HTTPS}", addr(443), "{IMAPP}", addr(143), "{IMAPTLS}", addr(993), "{POPP}", addr(110), "{POPTLS}", addr(995),
	)
	return r.Replace(exampleText)
}

const exampleText = `# tern.toml — the configuration of one tern server.
# Unknown keys are errors. Relative paths are relative to the data directory
# (by default the directory holding this file).

# The public name of this server: SMTP greeting, Received headers, TLS.
hostname = "{HOSTNAME}"

[log]
format = "text"          # "text" or "json"
level = "info"           # debug, info, warn, error

[tls]
cert = "tls/cert.pem"    # PEM certificate chain; SIGHUP reloads it
key = "tls/key.pem"

# Inbound mail from the world.
[smtp]
listen = [{SMTP}]
max_message_bytes = 52428800
max_recipients = 100     # per message
max_conns_per_ip = 20

# Mail from your users' clients (authentication required).
[submission]
listen = [{SUBM}]          # STARTTLS
listen_tls = [{SUBTLS}]    # implicit TLS
max_recipients = 100
max_messages_per_day = 1000

[imap]
listen = [{IMAPP}]         # STARTTLS
listen_tls = [{IMAPTLS}]   # implicit TLS

[pop3]
listen = [{POPP}]
listen_tls = [{POPTLS}]
mark_seen_on_retr = true

# MTA-STS policy (https://mta-sts.DOMAIN/), client autoconfiguration
# (autoconfig.DOMAIN, autodiscover), health check (/healthz).
[http]
listen_tls = [{HTTPS}]
mta_sts_mode = "testing"   # switch to "enforce" once a real certificate is in place

# Outbound delivery.
[queue]
lifetime = "120h"        # give up (and bounce) after this long
delay_warning = "4h"     # tell the sender a message is delayed
# resolver = "127.0.0.1:53"   # DNS server to use instead of the system's
# [queue.smarthost]           # relay everything through another server
# host = "smtp.provider.example"
# port = 587
# tls = "starttls"            # starttls, implicit or none
# username = "user"
# password = "secret"
`
