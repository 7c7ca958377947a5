package preflight

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"
)

// The providers' own texts (Google: support.google.com/a/answer/3726730
// and the SMTP relay service's replies; Microsoft: the Exchange Online
// NDR pages for 5.7.64, 5.7.606 and directory-based edge blocking).
func TestClassify(t *testing.T) {
	for _, c := range []struct {
		code int
		text string
		want Verdict
	}{
		{250, "2.1.5 OK q1-20020a05 - gsmtp", Accepted},
		{251, "User not local; will forward", Accepted},
		{550, "5.7.1 Mail relay denied [192.0.2.7]. Invalid credentials for relay for one of the domains in: example.com (as obtained from HELO and MAIL FROM). Email is being sent from a domain or IP address which isn't registered in your Workspace account. - gsmtp", SourceRefused},
		{550, "5.7.1 Invalid credentials for relay [192.0.2.7]. The IP address you've registered in your Workspace SMTP Relay service doesn't match domain of the account this email is being sent from. - gsmtp", SourceRefused},
		{421, "4.7.0 IP not in whitelist for RCPT domain, closing connection. - gsmtp", SourceRefused},
		{550, "5.7.1 [192.0.2.7] IP not in whitelist for RCPT domain - gsmtp", SourceRefused},
		{550, "5.7.64 TenantAttribution; Relay Access Denied [DM6NAM12FT012.eop-nam12.prod.protection.outlook.com]", SourceRefused},
		{550, "5.7.606 Access denied, banned sending IP [192.0.2.7]. To request removal from this list please visit https://sender.office.com/", SourceRefused},
		{550, "5.7.649 Access denied", SourceRefused},
		{550, "5.7.51 TenantInboundAttribution; There is a partner connector configured that matched the message's recipient domain.", SourceRefused},
		{554, "5.7.1 <x@example.com>: Relay access denied", SourceRefused},
		{550, "5.1.1 The email account that you tried to reach does not exist. Please try double-checking the recipient's email address for typos or unnecessary spaces. - gsmtp", MissingAccount},
		{550, "5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup", MissingAccount},
		{550, "5.4.1 Recipient address rejected: Access denied. AS(201806281) [SN1NAM02FT0.eop-nam02.prod.protection.outlook.com]", MissingAccount},
		{550, "5.1.1 <u@example.com>: Recipient address rejected: User unknown in local recipient table", MissingAccount},
		{550, "5.2.1 The email account that you tried to reach is disabled. - gsmtp", MissingAccount},
		{550, "User unknown", MissingAccount},
		{450, "4.2.1 The user you are trying to contact is receiving mail at a rate that prevents additional messages from being delivered. - gsmtp", Temporary},
		{451, "4.3.0 Temporary System Problem", Temporary},
		{550, "5.7.26 This mail has been blocked because the sender is unauthenticated. - gsmtp", Other},
		{552, "5.2.2 The recipient's inbox is out of storage space. - gsmtp", Other},
		{354, "Go ahead", Other},
	} {
		r := Reply{Code: c.code, Text: c.text}
		if got := Classify(r); got != c.want {
			t.Errorf("Classify(%s) = %v, want %v", r, got, c.want)
		}
	}
}

func TestEnhanced(t *testing.T) {
	for text, want := range map[string]string{
		"5.1.1 The email account": "5.1.1", "2.0.0 OK": "2.0.0", "5.7.606 Access denied": "5.7.606",
		"Recipient unknown": "", "1.2.3 no": "", "5.1 x": "", "5.a.1 x": "", "": "", "5.1.1000 x": "",
	} {
		if got := (Reply{Code: 550, Text: text}).Enhanced(); got != want {
			t.Errorf("Enhanced(%q) = %q, want %q", text, got, want)
		}
	}
}

func TestParseRate(t *testing.T) {
	for in, want := range map[string]time.Duration{"1/s": time.Second, "10/s": 100 * time.Millisecond, "30/1m": 2 * time.Second, "1/5": 5 * time.Second} {
		got, err := ParseRate(in)
		if err != nil || got != want {
			t.Errorf("ParseRate(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "fast", "0/s", "1/s, 2/m", "1/0"} {
		if _, err := ParseRate(bad); err == nil {
			t.Errorf("ParseRate(%q): no error", bad)
		}
	}
}

func FuzzClassify(f *testing.F) {
	f.Add(550, "5.1.1 The email account that you tried to reach does not exist. - gsmtp")
	f.Add(421, "4.7.0 IP not in whitelist for RCPT domain, closing connection.")
	f.Add(550, "5.7.606 Access denied, banned sending IP [192.0.2.1]")
	f.Add(250, "2.1.5 OK")
	f.Add(550, "5.4.1 Recipient address rejected: Access denied")
	f.Add(0, "5.7.")
	f.Fuzz(func(t *testing.T, code int, text string) {
		r := Reply{Code: code, Text: text}
		v := Classify(r)
		if code >= 200 && code < 300 && v != Accepted {
			t.Errorf("%d classified %v", code, v)
		}
		if (code < 200 || code > 599) && v != Other {
			t.Errorf("code %d classified %v", code, v)
		}
		if v == Temporary && code >= 500 {
			t.Errorf("%d classified temporary", code)
		}
		_ = r.String()
		if e := r.Enhanced(); e != "" && (len(e) < 5 || e[1] != '.') {
			t.Errorf("Enhanced(%q) = %q", text, e)
		}
	})
}

func FuzzParseRate(f *testing.F) {
	for _, s := range []string{"1/s", "30/1m", "0/s", "1/s,2/m", "9999999999/1s", "1/1w", "1/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseRate(s)
		if err == nil && d < 0 {
			t.Errorf("ParseRate(%q) = %v", s, d)
		}
	})
}

// FuzzSession feeds a server's side of the conversation to the client:
// the greeting, EHLO and one more reply, whatever bytes they are, never
// make it panic or hang.
func FuzzSession(f *testing.F) {
	f.Add([]byte("220 mx.example ESMTP\r\n250-mx.example\r\n250-STARTTLS\r\n250 SIZE 1000\r\n550 5.1.1 no\r\n"))
	f.Add([]byte("220-a\r\n220 b\r\n500 no\r\n250 HELO ok\r\n"))
	f.Add([]byte("22"))
	f.Add([]byte("220 x\n250-\n250 \n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		client, server := net.Pipe()
		go func() {
			server.Write(data)
			server.Close()
		}()
		go func() {
			// Swallow the client's commands: net.Pipe does not buffer.
			var b [512]byte
			for {
				if _, err := server.Read(b[:]); err != nil {
					return
				}
			}
		}()
		s := newSession(client, "mx.example", netipAddrPort(), time.Second)
		defer client.Close()
		if _, err := s.reply(); err != nil {
			return
		}
		if _, err := s.hello("client.example"); err != nil {
			return
		}
		for k := range s.ext {
			if k != string(bytes.ToUpper([]byte(k))) {
				t.Errorf("extension %q not upper case", k)
			}
		}
		r, _ := s.cmd("RCPT TO:<a@b>")
		Classify(r)
	})
}

func netipAddrPort() netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr("192.0.2.1"), 25)
}
