package dsn

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// Wrapping, compared with real Postfix bounces: each reference is the
// paragraph as Postfix printed it; joined back into one line and wrapped
// again it must come out the same. (Line breaks lose runs of blanks, but
// line_wrap strips those anyway.)
func TestLineWrapLikePostfix(t *testing.T) {
	refs := []struct{ src, text string }{
		{
			"bounce from zt3000mail.com to the osst-users list, Nov 2020",
			`<3198762540@qq.com>: host mx3.qq.com[113.96.208.206] said: 550 SPF check failed
    [MJHvSxAJGHO3ikqDyGdAjcULKSgPZo78Hug+oLGP843lyFgSKJqmf8c8zTt+9iwJ0Q==  IP:
    218.94.69.222].
    http://service.mail.qq.com/cgi-bin/help?subtype=1&&no=1001445&&id=20022.
    (in reply to end of DATA command)`,
		},
		{
			"same bounce, report part",
			`Diagnostic-Code: smtp; 550 SPF check failed
    [MJHvSxAJGHO3ikqDyGdAjcULKSgPZo78Hug+oLGP843lyFgSKJqmf8c8zTt+9iwJ0Q==  IP:
    218.94.69.222].
    http://service.mail.qq.com/cgi-bin/help?subtype=1&&no=1001445&&id=20022.`,
		},
		{
			"bounce from vps.com, Mar 2024",
			`<jdtan33@gmail.com>: host gmail-smtp-in.l.google.com[2607:f8b0:4023:c0d::1b]
    said: 550-5.7.1 [2a02:4780:10:d22e::1] The IP you're using to send mail is
    not 550-5.7.1 authorized to send email directly to our servers. Please use
    the SMTP 550-5.7.1 relay at your service provider instead. For more
    information, go to 550 5.7.1
    https://support.google.com/mail/?p=NotAuthorizedError
    m18-20020a170902f65200b001dd8b2a3858si3074866plg.233 - gsmtp (in reply to
    end of DATA command)`,
		},
		{
			"same bounce, report part",
			`Diagnostic-Code: smtp; 550-5.7.1 [2a02:4780:10:d22e::1] The IP you're using to
    send mail is not 550-5.7.1 authorized to send email directly to our
    servers. Please use the SMTP 550-5.7.1 relay at your service provider
    instead. For more information, go to 550 5.7.1
    https://support.google.com/mail/?p=NotAuthorizedError
    m18-20020a170902f65200b001dd8b2a3858si3074866plg.233 - gsmtp`,
		},
	}
	for _, ref := range refs {
		want := strings.Split(ref.text, "\n")
		var parts []string
		for _, l := range want {
			parts = append(parts, strings.TrimSpace(l))
		}
		got := lineWrap(strings.Join(parts, " "), wrapLength, wrapIndent)
		if strings.Join(got, "\n") != ref.text {
			t.Errorf("%s:\ngot\n%s\nwant\n%s", ref.src, strings.Join(got, "\n"), ref.text)
		}
	}
}

// A real Postfix bounce: the multipart/report of the notification that
// zt3000mail.com (Postfix) sent on 24 Nov 2020 and that reached the
// osst-users@lists.sourceforge.net archive, its returned header section cut
// short here. The same report, built by Build, must match it part for
// part, except for what mailtee words differently on purpose: the
// X-mailtee-* names of the X-Postfix-* fields, and "rfc822; addr" in
// Original-Recipient where Postfix copied the client's ORCPT ("rfc822;addr").
const postfixBounce = `Date: Tue, 24 Nov 2020 15:31:08 +0800 (CST)
From: MAILER-DAEMON@zt3000mail.com (Mail Delivery System)
To: osst-users@lists.sourceforge.net
Auto-Submitted: auto-replied
MIME-Version: 1.0
Message-Id: <4CgG0X4vk9z6NC9Fb@zt3000mail.com>
Subject: Undelivered Mail Returned to Sender
Content-Type: multipart/report; report-type=delivery-status;
	boundary="4CgFzw4Y2tz6NC9G3.1606203068/zt3000mail.com"
Content-Transfer-Encoding: 7bit

This is a MIME-encapsulated message.

--4CgFzw4Y2tz6NC9G3.1606203068/zt3000mail.com
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host zt3000mail.com.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients. It's attached below.

For further assistance, please send mail to postmaster.

If you do so, please include this problem report. You can
delete your own text from the attached returned message.

                   The mail system

<3198762540@qq.com>: host mx3.qq.com[113.96.208.206] said: 550 SPF check failed
    [MJHvSxAJGHO3ikqDyGdAjcULKSgPZo78Hug+oLGP843lyFgSKJqmf8c8zTt+9iwJ0Q==  IP:
    218.94.69.222].
    http://service.mail.qq.com/cgi-bin/help?subtype=1&&no=1001445&&id=20022.
    (in reply to end of DATA command)

--4CgFzw4Y2tz6NC9G3.1606203068/zt3000mail.com
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; zt3000mail.com
X-Postfix-Queue-ID: 4CgFzw4Y2tz6NC9G3
X-Postfix-Sender: rfc822; osst-users@lists.sourceforge.net
Arrival-Date: Tue, 24 Nov 2020 15:30:36 +0800 (CST)

Final-Recipient: rfc822; 3198762540@qq.com
Original-Recipient: rfc822;3198762540@qq.com
Action: failed
Status: 5.0.0
Remote-MTA: dns; mx3.qq.com
Diagnostic-Code: smtp; 550 SPF check failed
    [MJHvSxAJGHO3ikqDyGdAjcULKSgPZo78Hug+oLGP843lyFgSKJqmf8c8zTt+9iwJ0Q==  IP:
    218.94.69.222].
    http://service.mail.qq.com/cgi-bin/help?subtype=1&&no=1001445&&id=20022.

--4CgFzw4Y2tz6NC9G3.1606203068/zt3000mail.com
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers
Content-Transfer-Encoding: 7bit

Return-Path: <osst-users@lists.sourceforge.net>
Received: from mx.zt3000mail.com (localhost [127.0.0.1])
	by zt3000mail.com (Postfix) with ESMTP id 4CgFzw4Y2tz6NC9G3
	for <3198762540@qq.com>; Tue, 24 Nov 2020 15:30:36 +0800 (CST)
Date: Tue, 24 Nov 2020 15:30:14 +0800

--4CgFzw4Y2tz6NC9G3.1606203068/zt3000mail.com--
`

func TestBuildLikePostfix(t *testing.T) {
	cst := time.FixedZone("CST", 8*3600)
	r := &Report{
		ReportingMTA: "zt3000mail.com",
		QueueID:      "4CgFzw4Y2tz6NC9G3",
		To:           "osst-users@lists.sourceforge.net",
		Sender:       "osst-users@lists.sourceforge.net",
		Arrival:      time.Date(2020, 11, 24, 15, 30, 36, 0, cst),
		Recipients: []Recipient{{
			Final: "3198762540@qq.com", Original: "3198762540@qq.com",
			Status: "5.0.0", RemoteMTA: "mx3.qq.com",
			Diagnostic: "smtp; 550 SPF check failed [MJHvSxAJGHO3ikqDyGdAjcULKSgPZo78Hug+oLGP843lyFgSKJqmf8c8zTt+9iwJ0Q==  IP: 218.94.69.222]. http://service.mail.qq.com/cgi-bin/help?subtype=1&&no=1001445&&id=20022.",
			Reason:     "host mx3.qq.com[113.96.208.206] said: 550 SPF check failed [MJHvSxAJGHO3ikqDyGdAjcULKSgPZo78Hug+oLGP843lyFgSKJqmf8c8zTt+9iwJ0Q==  IP: 218.94.69.222]. http://service.mail.qq.com/cgi-bin/help?subtype=1&&no=1001445&&id=20022. (in reply to end of DATA command)",
		}},
		// The queue file's headers: Postfix adds Return-Path itself.
		Headers: []byte("Received: from mx.zt3000mail.com (localhost [127.0.0.1])\n" +
			"\tby zt3000mail.com (Postfix) with ESMTP id 4CgFzw4Y2tz6NC9G3\n" +
			"\tfor <3198762540@qq.com>; Tue, 24 Nov 2020 15:30:36 +0800 (CST)\n" +
			"Date: Tue, 24 Nov 2020 15:30:14 +0800\n\nbody\n"),
	}
	got, err := Build(r, time.Date(2020, 11, 24, 15, 31, 8, 0, cst), "4CgG0X4vk9z6NC9Fb@zt3000mail.com")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(strings.ReplaceAll(string(got), "\r\n", ""), "\n") {
		t.Fatal("bare LF in output")
	}

	want := strings.NewReplacer("X-Postfix-", "X-mailtee-", "rfc822;3198", "rfc822; 3198").Replace(postfixBounce)
	gotHead, gotBody, _ := strings.Cut(strings.ReplaceAll(string(got), "\r\n", "\n"), "\n\n")
	wantHead, wantBody, _ := strings.Cut(want, "\n\n")
	if gotBody != wantBody {
		t.Errorf("body differs from Postfix's\n%s", diff(gotBody, wantBody))
	}

	// Header fields: the same set, in mailtee's order, with the From
	// in the standard form (Postfix's header_from_format = standard,
	// the default since Postfix 3.3) rather than the obsolete one.
	wantFields := map[string]string{}
	for _, f := range unfold(wantHead) {
		name, value, _ := strings.Cut(f, ": ")
		wantFields[name] = value
	}
	wantFields["From"] = "Mail Delivery System <MAILER-DAEMON@zt3000mail.com>"
	gotFields := unfold(gotHead)
	if len(gotFields) != len(wantFields) {
		t.Errorf("header fields %q, want %q", gotFields, wantFields)
	}
	for _, f := range gotFields {
		name, value, _ := strings.Cut(f, ": ")
		if wantFields[name] != value {
			t.Errorf("%s: %q, want %q", name, value, wantFields[name])
		}
	}
}

// unfold returns a header section's fields, continuation lines joined.
func unfold(head string) []string {
	var fields []string
	for _, l := range strings.Split(head, "\n") {
		if strings.HasPrefix(l, "\t") || strings.HasPrefix(l, " ") {
			fields[len(fields)-1] += "\n" + l
			continue
		}
		fields = append(fields, l)
	}
	return fields
}

// diff shows the first differing line.
func diff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := 0; i < len(g) || i < len(w); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return "line " + strconv.Itoa(i+1) + ":\n got  " + strings.ReplaceAll(gl, "\t", "\\t") + "\n want " + strings.ReplaceAll(wl, "\t", "\\t")
		}
	}
	return "(same lines)"
}
