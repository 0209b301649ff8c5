package server_test

import (
	"reflect"
	"strings"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/synod-io/synod/server"
)

func testMembership() server.Membership {
	return server.Membership{Health: 3, HealthMax: 8, Incarnation: 7, Members: []server.MemberHealth{
		{ID: 0xa1b2, Name: "n1", State: server.SWIMAlive, Incarnation: 7},
		{ID: 2, Name: "n2", State: server.SWIMSuspect, Incarnation: 1},
		{ID: 0xffffffffffffffff, Name: "n3", State: server.SWIMDead},
		{ID: 4, Name: "n4", State: server.SWIMUnknown},
		{ID: 5, Name: "n5", State: "State(9)", Incarnation: 1 << 63}, // a state this version does not know
	}}
}

// withoutNames is m as ParseMembershipHeader returns it: without names.
func withoutNames(m server.Membership) server.Membership {
	m.Members = append([]server.MemberHealth(nil), m.Members...)
	for i := range m.Members {
		m.Members[i].Name = ""
	}
	return m
}

func TestMembershipHeaderRoundTrip(t *testing.T) {
	for _, m := range []server.Membership{testMembership(), {HealthMax: 8}} {
		md := server.MembershipHeader(m)
		got, err := server.ParseMembershipHeader(md)
		if err != nil {
			t.Fatalf("ParseMembershipHeader(%v): %v", md, err)
		}
		if want := withoutNames(m); got == nil || !reflect.DeepEqual(*got, want) {
			t.Errorf("round trip of %+v through %v: got %+v", want, md, got)
		}
	}
	md := server.MembershipHeader(testMembership())
	if got := md.Get(server.SWIMHealthKey); !reflect.DeepEqual(got, []string{"3/8"}) {
		t.Errorf("%s = %q", server.SWIMHealthKey, got)
	}
	if got := md.Get(server.SWIMMembersKey); len(got) != 5 || got[0] != "a1b2 alive 7" || got[2] != "ffffffffffffffff dead 0" {
		t.Errorf("%s = %q", server.SWIMMembersKey, got)
	}
	// Metadata without the keys (a member without SWIM, or etcd) is no
	// view and no error.
	if got, err := server.ParseMembershipHeader(metadata.Pairs("content-type", "application/grpc")); got != nil || err != nil {
		t.Errorf("metadata without SWIM: %+v, %v", got, err)
	}
}

// TestMembershipHeaderMalformed: every malformed header is an error that
// names the key and what was wrong, never a panic or a partial view.
func TestMembershipHeaderMalformed(t *testing.T) {
	good := server.MembershipHeader(testMembership())
	with := func(key string, values ...string) metadata.MD {
		md := good.Copy()
		md[key] = values
		return md
	}
	for _, tc := range []struct {
		name string
		md   metadata.MD
		want string
	}{
		{"no health", with(server.SWIMHealthKey), "0 values of synod-swim-health"},
		{"two healths", with(server.SWIMHealthKey, "0/8", "1/8"), "2 values of synod-swim-health"},
		{"health without max", with(server.SWIMHealthKey, "3"), `"3": want "<health>/<health max>"`},
		{"health not a number", with(server.SWIMHealthKey, "x/8"), "synod-swim-health header metadata \"x/8\""},
		{"negative health", with(server.SWIMHealthKey, "-1/8"), "synod-swim-health"},
		{"huge health", with(server.SWIMHealthKey, "99999999999999999999/8"), "synod-swim-health"},
		{"health above max", with(server.SWIMHealthKey, "9/8"), "health above its maximum"},
		{"no incarnation", with(server.SWIMIncarnationKey), "0 values of synod-swim-incarnation"},
		{"bad incarnation", with(server.SWIMIncarnationKey, "1e3"), `synod-swim-incarnation header metadata "1e3"`},
		{"only members", metadata.MD{server.SWIMMembersKey: {"1 alive 1"}}, "0 values of synod-swim-health"},
		{"member of two fields", with(server.SWIMMembersKey, "1 alive"), `"1 alive": want "<id in hex> <state> <incarnation>"`},
		{"member of four fields", with(server.SWIMMembersKey, "1 alive 1 x"), "<id in hex> <state> <incarnation>"},
		{"double space", with(server.SWIMMembersKey, "1  alive 1"), "<id in hex> <state> <incarnation>"},
		{"empty member", with(server.SWIMMembersKey, ""), "<id in hex> <state> <incarnation>"},
		{"member ID 0", with(server.SWIMMembersKey, "0 alive 1"), "non-zero member ID in hex"},
		{"member ID not hex", with(server.SWIMMembersKey, "0xg alive 1"), "non-zero member ID in hex"},
		{"member ID too long", with(server.SWIMMembersKey, "1ffffffffffffffff alive 1"), "non-zero member ID in hex"},
		{"member twice", with(server.SWIMMembersKey, "1 alive 1", "2 alive 1", "1 dead 2"), `"1 dead 2": member listed twice`},
		{"state too long", with(server.SWIMMembersKey, "1 "+strings.Repeat("a", 33)+" 1"), "state of 1..32 printable characters"},
		{"state not printable", with(server.SWIMMembersKey, "1 al\x7five 1"), "state of 1..32 printable characters"},
		{"member incarnation", with(server.SWIMMembersKey, "1 alive -1"), "want a decimal incarnation"},
		{"too many members", with(server.SWIMMembersKey, make([]string, 1<<10+1)...), "1025 values of synod-swim-members, at most 1024"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := server.ParseMembershipHeader(tc.md)
			if err == nil || got != nil {
				t.Fatalf("ParseMembershipHeader(%v) = %+v, %v; want an error", tc.md, got, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q lacks %q", err, tc.want)
			}
		})
	}
}

// TestStatusMembershipHeader: Maintenance.Status sends the backend's SWIM
// view as header metadata, and none for a backend without one.
func TestStatusMembershipHeader(t *testing.T) {
	b := newFakeBackend(1, &fakeCluster{})
	url := startMember(t, b, server.Config{})
	c := newClient(t, url)
	conn, err := c.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	status := func() (*server.Membership, error) {
		var md metadata.MD
		if _, err := pb.NewMaintenanceClient(conn).Status(testCtx(t), &pb.StatusRequest{}, grpc.Header(&md)); err != nil {
			t.Fatal(err)
		}
		return server.ParseMembershipHeader(md)
	}
	if got, err := status(); got != nil || err != nil {
		t.Errorf("a member without SWIM: %+v, %v", got, err)
	}
	b.setSWIM(new(testMembership()))
	got, err := status()
	if want := withoutNames(testMembership()); err != nil || got == nil || !reflect.DeepEqual(*got, want) {
		t.Errorf("a member with SWIM: %+v, %v; want %+v", got, err, want)
	}
}
