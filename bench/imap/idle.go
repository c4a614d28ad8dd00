package main

import (
	"bufio"
	"flag"
	"fmt"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// idle opens many IDLE sessions, reports the server's resident memory per
// connection, then measures how long a new message takes to reach every
// idling session of its user.
func idle(args []string) error {
	fs := flag.NewFlagSet("idle", flag.ExitOnError)
	addr := fs.String("addr", "", "server address")
	conns := fs.Int("conns", 10000, "IDLE connections")
	users := fs.Int("users", 100, "users the connections are spread over")
	pid := fs.Int("pid", 0, "server process id (for RSS)")
	rounds := fs.Int("rounds", 5, "push-latency measurements")
	fs.Parse(args)
	rss0 := rssKiB(*pid)
	type idler struct {
		c    net.Conn
		user int
	}
	idlers := make([]*idler, *conns)
	events := make([]chan time.Time, *users+1)
	for u := range events {
		events[u] = make(chan time.Time, *conns)
	}
	sem := make(chan bool, 32)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	start := time.Now()
	for i := 0; i < *conns; i++ {
		wg.Add(1)
		sem <- true
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			u := 1 + i%*users
			c, br, err := startIdle(*addr, userName(u))
			if err != nil {
				mu.Lock()
				firstErr = err
				mu.Unlock()
				return
			}
			idlers[i] = &idler{c: c, user: u}
			go func() {
				for {
					l, err := br.ReadString('\n')
					if err != nil {
						return
					}
					if strings.HasSuffix(strings.TrimSpace(l), " EXISTS") {
						events[u] <- time.Now()
					}
				}
			}()
		}(i)
	}
	wg.Wait()
	if firstErr != nil {
		return fmt.Errorf("opening IDLE sessions: %w", firstErr)
	}
	fmt.Printf("idle: %d sessions up in %.1fs\n", *conns, time.Since(start).Seconds())
	time.Sleep(3 * time.Second)
	rss1 := rssKiB(*pid)
	if *pid != 0 {
		fmt.Printf("idle: server RSS %d KiB before, %d KiB with %d IDLE sessions: %.1f KiB per connection\n",
			rss0, rss1, *conns, float64(rss1-rss0)/float64(*conns))
	}
	per := *conns / *users
	var lat []time.Duration
	for r := 0; r < *rounds; r++ {
		u := 1 + r%*users
		c, err := dial(*addr)
		if err != nil {
			return err
		}
		if err := c.cmd("LOGIN %s %s", userName(u), password); err != nil {
			return err
		}
		t0 := time.Now()
		if err := c.cmdLiteral([]byte("Subject: push\r\n\r\npush test\r\n"), "APPEND INBOX"); err != nil {
			return err
		}
		c.cmd("LOGOUT")
		c.close()
		var worst time.Duration
		for k := 0; k < per; k++ {
			select {
			case t := <-events[u]:
				worst = max(worst, t.Sub(t0))
			case <-time.After(10 * time.Second):
				return fmt.Errorf("round %d: only %d of %d sessions notified", r, k, per)
			}
		}
		lat = append(lat, worst)
		time.Sleep(200 * time.Millisecond)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	fmt.Printf("idle: push latency to all %d sessions of a user (APPEND start to last EXISTS): median %v, max %v\n",
		per, lat[len(lat)/2].Round(time.Microsecond), lat[len(lat)-1].Round(time.Microsecond))
	for _, it := range idlers {
		if it != nil {
			it.c.Close()
		}
	}
	return nil
}

func startIdle(addr, user string) (net.Conn, *bufio.Reader, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, nil, err
	}
	br := bufio.NewReaderSize(c, 1024)
	c.SetDeadline(time.Now().Add(60 * time.Second))
	expect := func(tag string) error {
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				return err
			}
			if strings.HasPrefix(l, tag) {
				if tag != "+" && !strings.HasPrefix(l, tag+"OK") {
					return fmt.Errorf("%q", l)
				}
				return nil
			}
		}
	}
	steps := []struct{ send, tag string }{
		{"", "* "},
		{"a LOGIN " + user + " " + password + "\r\n", "a "},
		{"b SELECT INBOX\r\n", "b "},
		{"c IDLE\r\n", "+"},
	}
	for _, s := range steps {
		if s.send != "" {
			if _, err := c.Write([]byte(s.send)); err != nil {
				c.Close()
				return nil, nil, err
			}
		}
		if err := expect(s.tag); err != nil {
			c.Close()
			return nil, nil, err
		}
	}
	c.SetDeadline(time.Time{})
	return c, br, nil
}

// rssKiB reads a process's resident set size from /proc, after asking it
// (SIGUSR1, see serve) to return freed memory to the OS.
func rssKiB(pid int) int {
	if pid == 0 {
		return 0
	}
	if p, err := os.FindProcess(pid); err == nil {
		p.Signal(syscall.SIGUSR1)
		time.Sleep(2 * time.Second)
	}
	return statusKiB(pid, "VmRSS")
}

// statusKiB reads one KiB figure (VmRSS, VmHWM, RssAnon, RssFile) of
// /proc/PID/status.
func statusKiB(pid int, key string) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == key+":" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	return 0
}
