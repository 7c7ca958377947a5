package web_test

import (
	"fmt"
	"io"
	"net/http"

	"github.com/mailtee/mailtee/internal/web"
)

// The listener as serve starts it: options from main.cf (here by
// hand), the handlers mounted, then Start.
func ExampleNew() {
	s, err := web.New(web.Options{
		Listen:   "127.0.0.1:0", // metrics_listen
		Networks: web.MustParseNetworks("127.0.0.0/8, [::1]/128"),
		Metrics: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "postfix_up 1\n")
		}),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := s.Start(); err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()
	for _, path := range []string{"/metrics", "/api/summary"} {
		resp, err := http.Get(s.URL() + path)
		if err != nil {
			fmt.Println(err)
			return
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Printf("%s: %d %s", path, resp.StatusCode, body)
	}
	// Output:
	// /metrics: 200 postfix_up 1
	// /api/summary: 404 404 page not found
}
