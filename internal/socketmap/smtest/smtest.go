// Package smtest runs a socketmap server for tests: a real listener on
// loopback TCP or a UNIX socket that answers each "name key" request with
// what the test's handler says, including the misbehaviours a client must
// survive (a malformed netstring, a connection closed without a reply, no
// reply at all). It can be stopped and started again on the same address,
// for "table down" tests.
package smtest

import (
	"bufio"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/mailtee/mailtee/internal/socketmap"
)

// Reply is what the server does with one request.
type Reply struct {
	Raw   []byte // written as is (a whole netstring, or a broken one)
	Close bool   // close the connection without a reply
	Hang  bool   // never reply; the connection stays open until Stop
}

// OK, NotFound and Status build well-formed replies.
func OK(v string) Reply           { return Status("OK", v) }
func NotFound() Reply             { return Status("NOTFOUND", "") }
func Status(s, text string) Reply { return Reply{Raw: socketmap.AppendNetstring(nil, s+" "+text)} }

// Handler answers one request for map name and key.
type Handler func(name, key string) Reply

// Server is a socketmap server on loopback.
type Server struct {
	Network string // "tcp" or "unix"
	Addr    string // 127.0.0.1:PORT or the socket's path
	handler Handler

	mu       sync.Mutex
	lis      net.Listener
	conns    map[net.Conn]bool
	accepted int
	keys     []string
	wg       sync.WaitGroup
}

// New starts a server on network "tcp" (127.0.0.1, a free port) or
// "unix" (a socket in a temporary directory); it stops when the test
// ends.
func New(t testing.TB, network string, h Handler) *Server {
	t.Helper()
	s := &Server{Network: network, handler: h, conns: map[net.Conn]bool{}}
	addr := "127.0.0.1:0"
	if network == "unix" {
		// UNIX socket paths are short (108 bytes): not under t.TempDir's
		// long name.
		dir, err := os.MkdirTemp("", "smtest")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		addr = filepath.Join(dir, "socketmap.sock")
	}
	if err := s.listen(addr); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

// Spec is the table's name as main.cf writes it, for map name.
func (s *Server) Spec(name string) string {
	if s.Network == "unix" {
		return "socketmap:unix:" + s.Addr + ":" + name
	}
	return "socketmap:inet:" + s.Addr + ":" + name
}

func (s *Server) listen(addr string) error {
	if s.Network == "unix" {
		os.Remove(addr)
	}
	lis, err := net.Listen(s.Network, addr)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.lis, s.Addr = lis, lis.Addr().String()
	s.mu.Unlock()
	s.wg.Add(1)
	go s.accept(lis)
	return nil
}

// Stop closes the listener and every connection: the table is down.
func (s *Server) Stop() {
	s.mu.Lock()
	if s.lis != nil {
		s.lis.Close()
		s.lis = nil
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// Start listens again on the same address after Stop.
func (s *Server) Start() error {
	s.mu.Lock()
	up := s.lis != nil
	s.mu.Unlock()
	if up {
		return nil
	}
	return s.listen(s.Addr)
}

// Accepted is how many connections the server has accepted.
func (s *Server) Accepted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accepted
}

// Open is how many connections are open now.
func (s *Server) Open() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Keys are the keys asked so far, in order.
func (s *Server) Keys() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.keys...)
}

func (s *Server) accept(lis net.Listener) {
	defer s.wg.Done()
	for {
		c, err := lis.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.lis != lis {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = true
		s.accepted++
		s.mu.Unlock()
		s.wg.Add(1)
		go s.serve(c)
	}
}

func (s *Server) serve(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
	}()
	r := bufio.NewReader(c)
	for {
		req, err := socketmap.ReadNetstring(r, 0)
		if err != nil {
			return
		}
		name, key, _ := strings.Cut(string(req), " ")
		s.mu.Lock()
		s.keys = append(s.keys, key)
		s.mu.Unlock()
		rep := s.handler(name, key)
		switch {
		case rep.Close:
			return
		case rep.Hang:
			// Read until the client or Stop closes the connection.
			for {
				if _, err := r.ReadByte(); err != nil {
					return
				}
			}
		}
		if _, err := c.Write(rep.Raw); err != nil {
			return
		}
	}
}
