package smtpd

import (
	"bytes"
	"io"
	"testing"
	"testing/iotest"
)

// bytewise is what bodyReader made of content before fill passed runs of
// ordinary bytes through whole: every byte through step.
func bytewise(content []byte, reject, bdat bool) ([]byte, error) {
	b := &bodyReader{reject: reject, bdat: bdat}
	var out []byte
	for _, c := range content {
		b.out = out
		if err := b.step(c); err != nil {
			return nil, err
		}
		out = b.out
	}
	if b.cr || b.dotCR {
		return nil, errBareCR
	}
	return out, nil
}

// FuzzBodyReader: however the content is cut into reads, bodyReader
// makes of it what step makes byte by byte, and fails where it fails.
func FuzzBodyReader(f *testing.F) {
	for _, s := range []string{
		"Subject: x\r\n\r\nbody\r\n",
		"a\nb\n.\nc\r\n",
		"a\n.x\n..\n.\r\nz",
		"bare\rcr\r\n",
		"end\r",
		".\n",
	} {
		f.Add([]byte(s), uint8(3), false, false)
	}
	f.Fuzz(func(t *testing.T, content []byte, cut uint8, reject, bdat bool) {
		want, wantErr := bytewise(content, reject, bdat)
		var r io.Reader = bytes.NewReader(content)
		if cut%4 == 1 {
			r = iotest.OneByteReader(r)
		} else if cut%4 == 2 {
			r = iotest.HalfReader(r)
		}
		b := &bodyReader{r: r, reject: reject, bdat: bdat}
		defer b.release()
		got, err := io.ReadAll(b)
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("content %q: error %v, byte by byte %v", content, err, wantErr)
		}
		if err == nil && !bytes.Equal(got, want) {
			t.Fatalf("content %q:\n got %q\nwant %q", content, got, want)
		}
	})
}

// The buffers are reused from one message to the next: a message read
// through bodyReader allocates next to nothing once the pool is warm.
func TestBodyReaderReusesBuffers(t *testing.T) {
	msg := bytes.Repeat([]byte("a line of an ordinary message, nothing special in it\r\n"), 40)
	read := func() {
		b := &bodyReader{r: bytes.NewReader(msg)}
		buf := make([]byte, 16<<10)
		for {
			if _, err := b.Read(buf); err != nil {
				break
			}
		}
		b.release()
	}
	read()
	if n := testing.AllocsPerRun(50, read); n > 3 {
		t.Errorf("%v allocations per message, want a few (the buffers come from the pool)", n)
	}
}

// BenchmarkBodyReader: a 2 KB message through bodyReader, as cleanup
// reads it (16 KB reads).
func BenchmarkBodyReader(b *testing.B) {
	msg := bytes.Repeat([]byte("a line of an ordinary message, nothing special in it\r\n"), 38)
	buf := make([]byte, 16<<10)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		r := &bodyReader{r: bytes.NewReader(msg)}
		for {
			if _, err := r.Read(buf); err != nil {
				break
			}
		}
		r.release()
	}
}
