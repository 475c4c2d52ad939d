package realserver

import (
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRedis(t *testing.T) {
	s := Redis(t)
	c, err := DialRedis(s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"PING"}, "PONG"},
		{[]string{"SET", "k", "v"}, "OK"},
		{[]string{"GET", "k"}, "v"},
		{[]string{"GET", "missing"}, "(nil)"},
		{[]string{"HELLO", "3"}, ""}, // a map; checked below
		{[]string{"SUBSCRIBE", "ch"}, ">[subscribe ch 1]"},
	} {
		got, err := c.Do(5*time.Second, tt.args...)
		if err != nil {
			t.Fatalf("%v: %v", tt.args, err)
		}
		if tt.want == "" {
			if got.Type != '%' {
				t.Errorf("%v: got %v; want a map", tt.args, got)
			}
			continue
		}
		if got.String() != tt.want {
			t.Errorf("%v: got %v; want %v", tt.args, got, tt.want)
		}
	}
}

func TestRedisDirectives(t *testing.T) {
	s := Redis(t, "requirepass s3cret")
	c, err := DialRedis(s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got, _ := c.Do(5*time.Second, "GET", "k"); got.Err() == nil {
		t.Errorf("GET without AUTH: got %v; want -NOAUTH", got)
	}
	if got, err := c.Do(5*time.Second, "AUTH", "s3cret"); err != nil || got.String() != "OK" {
		t.Errorf("AUTH: got %v, %v; want OK", got, err)
	}
}

func TestMemcached(t *testing.T) {
	s := Memcached(t)
	c, err := DialRedis(s.Addr) // any TCP conn will do
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte("mn\r\n"))
	line, err := c.r.ReadString('\n')
	if err != nil || line != "MN\r\n" {
		t.Errorf("mn: got %q, %v; want MN", line, err)
	}
}
