// Command profd serves inbound SMTP on a fresh store with a CPU profile,
// for looking into bench/smtp's figures: profd -data DIR -listen ADDR -cpuprofile FILE.
// It stops on SIGTERM/SIGINT.
package main

import (
	"context"
	"flag"
	"log"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/tern-mail/tern/internal/account"
	"github.com/tern-mail/tern/internal/smtpserver"
	"github.com/tern-mail/tern/internal/store"
)

func main() {
	data := flag.String("data", "", "data directory")
	listen := flag.String("listen", "127.0.0.1:22599", "address")
	prof := flag.String("cpuprofile", "", "CPU profile file")
	flag.Parse()
	ctx := context.Background()
	st, err := store.Open(ctx, *data, store.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	accts := account.New(st)
	st.AddDomain(ctx, "example.org")
	accts.Add(ctx, "alice@example.org", "bench-password-1")
	logf, _ := os.Create(*data + "/log")
	srv := smtpserver.New(smtpserver.Config{Mode: smtpserver.Inbound, Store: st, Accounts: accts, Hostname: "bench.example",
		Logger: slog.New(slog.NewTextHandler(logf, nil)), MaxConnsPerIP: 500})
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	if *prof != "" {
		f, _ := os.Create(*prof)
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	go srv.Serve(l)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	srv.Shutdown(ctx)
}
