package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
)

// floor serves the same messages as prepare stores, from memory, with the
// least a POP3 server can do: every message is kept in wire form, any
// login is accepted, and a RETR is one look-up and one buffered write
// (flushed, as tern's sessions do, once no command is left to read). Its
// rate with the same client is the ceiling for any server on this
// machine: what remains is the client's and the kernel's share.
//
//	pop3bench floor -corpus DIR -n 5000 -addr 127.0.0.1:PORT
func floor(args []string) error {
	fs := flag.NewFlagSet("floor", flag.ExitOnError)
	corpus := fs.String("corpus", "", "corpus data directory")
	n := fs.Int("n", 5000, "messages per maildrop")
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	fs.Parse(args)
	files, err := corpusFiles(*corpus, *n)
	if err != nil {
		return err
	}
	wire := make([][]byte, len(files))
	for i, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		wire[i] = toWire(b)
	}
	var uidl, list bytes.Buffer
	uidl.WriteString("+OK\r\n")
	list.WriteString("+OK\r\n")
	for i, w := range wire {
		fmt.Fprintf(&uidl, "%d %08X\r\n", i+1, i+1)
		fmt.Fprintf(&list, "%d %d\r\n", i+1, len(w))
	}
	uidl.WriteString(".\r\n")
	list.WriteString(".\r\n")
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	fmt.Println("listening on", l.Addr())
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		go floorSession(c, wire, uidl.Bytes(), list.Bytes())
	}
}

func floorSession(c net.Conn, wire [][]byte, uidl, list []byte) {
	defer c.Close()
	r := bufio.NewReaderSize(c, 4096)
	w := bufio.NewWriterSize(c, 64<<10)
	w.WriteString("+OK floor ready\r\n")
	for {
		if r.Buffered() == 0 && w.Flush() != nil {
			return
		}
		line, err := r.ReadSlice('\n')
		if err != nil {
			return
		}
		line = bytes.TrimRight(line, "\r\n")
		verb, arg, _ := bytes.Cut(line, []byte(" "))
		switch string(bytes.ToUpper(verb)) {
		case "UIDL":
			w.Write(uidl)
		case "LIST":
			w.Write(list)
		case "RETR":
			i, err := strconv.Atoi(string(arg))
			if err != nil || i < 1 || i > len(wire) {
				w.WriteString("-ERR no such message\r\n")
				continue
			}
			m := wire[i-1]
			w.WriteString("+OK " + strconv.Itoa(len(m)-3) + " octets\r\n")
			w.Write(m)
		case "QUIT":
			w.WriteString("+OK bye\r\n")
			w.Flush()
			return
		default:
			w.WriteString("+OK\r\n")
		}
	}
}

// toWire is a message as a RETR body: CRLF line ends, dot-stuffed, with
// the terminating line.
func toWire(b []byte) []byte {
	var out []byte
	for len(b) > 0 {
		line, rest, found := bytes.Cut(b, []byte("\n"))
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) > 0 && line[0] == '.' {
			out = append(out, '.')
		}
		out = append(out, line...)
		out = append(out, '\r', '\n')
		if !found {
			break
		}
		b = rest
	}
	return append(out, ".\r\n"...)
}
