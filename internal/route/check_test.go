package route

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailtee/mailtee/internal/diag"
	"github.com/mailtee/mailtee/internal/maps"
)

// Issue 13, defect 2: a mistyped transport passed check and mail to it
// waited in the queue. Every transport name check can see is checked,
// and the finding names the file and line where it is written.
// transports are those mailtee delivers with (qmgr's agents).
var transports = []string{"discard", "error", "lmtp", "local", "relay", "smtp"}

func TestCheckTransports(t *testing.T) {
	hash := openTable(t, "hash", "# comment\na.example  smtp:[10.0.0.1]\nb.example  smpt:[10.0.0.1]\nc.example  :[gw.example]\nd.example  error:no mail here\ne.example  local\n")
	re := openTable(t, "regexp", "/^(.*)@x\\.example$/  eror:$1\n/^(.*)@y\\.example$/  $1:[gw]\n/^(.*)@z\\.example$/  relay:[$1]\n/@v\\.example$/  virtual:\n")
	inline, _, err := maps.Open("inline:{ f.example=lmpt:unix:/x, g.example=lmtp:unix:/x }")
	if err != nil {
		t.Fatal(err)
	}
	static, _, _ := maps.Open("static:{uucp:gw}")
	params := []Setting{
		{"default_transport", "eror:nowhere", 3},
		{"relay_transport", "relay", 0},
		{"local_transport", ":x", 5},
	}
	tables := []Map{
		{Spec: "hash:H", Line: 7, Table: hash},
		{Spec: "regexp:R", Line: 7, Table: re},
		{Spec: "inline:...", Line: 7, Table: inline},
		{Spec: "static:{uucp:gw}", Line: 7, Table: static},
	}
	got := CheckTransports("main.cf", transports, params, tables)
	want := []struct {
		file string
		line int
		msg  string
	}{
		{"main.cf", 3, `default_transport: "eror:nowhere": unknown mail transport "eror"`},
		{"main.cf", 5, "local_transport: \":x\": null transport"},
		{"transport", 3, `"smpt:[10.0.0.1]": unknown mail transport "smpt"`},
		{"transport", 1, `"eror:...": unknown mail transport "eror"`},
		{"transport", 4, `unknown mail transport "virtual"`},
		{"main.cf", 7, `"lmpt:unix:/x": unknown mail transport "lmpt"`},
		{"main.cf", 7, `"uucp:gw": unknown mail transport "uucp"`},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d findings, want %d:\n%v", len(got), len(want), got)
	}
	for i, w := range want {
		d := got[i]
		if filepath.Base(d.File) != w.file || d.Line != w.line || d.Severity != diag.Error || !strings.Contains(d.Msg, w.msg) {
			t.Errorf("finding %d = %v, want %s line %d: ...%s...", i, d, w.file, w.line, w.msg)
		}
	}
	for _, typo := range []string{"eror", "smpt", "lmpt"} {
		if !strings.Contains(CheckTransports("f", transports, []Setting{{"default_transport", typo, 1}}, nil)[0].Msg, "did you mean") {
			t.Errorf("%s: want a suggestion", typo)
		}
	}
}

func TestCheckTransportsGood(t *testing.T) {
	var params []Setting
	for _, tr := range transports {
		params = append(params, Setting{"default_transport", tr + ":x", 1}, Setting{"relay_transport", tr, 2})
	}
	if d := CheckTransports("main.cf", transports, params, nil); len(d) != 0 {
		t.Errorf("want nothing, got %v", d)
	}
}

func TestOneEdit(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"eror", "error", true}, {"smpt", "smtp", true}, {"lmtp", "smtp", true},
		{"smtp", "smtp", false}, {"discrad", "discard", true}, {"uucp", "local", false}, {"", "smtp", false},
	} {
		if got := oneEdit(tc.a, tc.b); got != tc.want {
			t.Errorf("oneEdit(%q, %q) = %v", tc.a, tc.b, got)
		}
	}
}
