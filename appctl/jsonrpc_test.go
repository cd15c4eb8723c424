package appctl

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestReadObjectFraming(t *testing.T) {
	// Back to back, no newline framing, braces inside strings and escapes.
	stream := `{"id":1,"result":"a { b","error":null}  {"id":2,"result":"q\"}\\","error":null}` + "\n" + `{"id":3,"result":{"reply":"x"},"error":null}`
	r := bufio.NewReader(bytes.NewReader([]byte(stream)))
	for id := uint64(1); id <= 3; id++ {
		frame, err := readObject(r, 1<<20)
		require.NoError(t, err)
		_, err = parseReply(frame, id)
		require.NoError(t, err, string(frame))
	}
	_, err := readObject(r, 1<<20)
	assert.Equal(t, io.EOF, err)

	out, err := parseReply([]byte(`{"id":2,"result":"q\"}\\","error":null}`), 2)
	require.NoError(t, err)
	assert.Equal(t, `q"}\`, out)
	out, err = parseReply([]byte(`{"id":3,"result":{"reply":"x"},"error":null}`), 3)
	require.NoError(t, err)
	assert.Equal(t, `{"reply":"x"}`, out, "a non-string result is kept as JSON text")
}

func TestAppendRequest(t *testing.T) {
	b := appendRequest(nil, "dpif/show-dp-features", []string{"br-int"}, 7)
	assert.Equal(t, `{"id":7,"method":"dpif/show-dp-features","params":["br-int"]}`, string(b))
	b = appendRequest(nil, "version", nil, 1)
	assert.Equal(t, `{"id":1,"method":"version","params":[]}`, string(b))
}

// decode reads every frame of data as replies to ids 1, 2, ...
func decode(data []byte, max int) error {
	r := bufio.NewReader(bytes.NewReader(data))
	for id := uint64(1); ; id++ {
		frame, err := readObject(r, max)
		if err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
		if len(frame) > max {
			return errors.New("frame over the cap")
		}
		if _, err := parseReply(frame, id); err != nil {
			var se *ServerError
			if !errors.Is(err, ErrMalformed) && !errors.As(err, &se) {
				return err
			}
		}
	}
}

func FuzzDecodeReply(f *testing.F) {
	f.Add([]byte(`{"id":1,"result":"Recirc: Yes\n","error":null}`))
	f.Add([]byte(`{"id":1,"result":null,"error":"no such bridge"}{"id":2,"result":"x","error":null}`))
	f.Add([]byte(`{"id":1,"result":"a{[\"","error":null}`))
	f.Add([]byte(`{"id":1,"result":"trunc`))
	f.Add([]byte(`]]]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		err := decode(data, 4096)
		if err == nil {
			return
		}
		if errors.Is(err, ErrMalformed) || errors.Is(err, ErrReplyTooLarge) {
			return
		}
		t.Fatalf("unexpected error class: %v", err)
	})
}
