package errutil

import (
	"errors"
	"fmt"
	"io/fs"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestRoot(t *testing.T) {
	base := errors.New("no such file or directory")
	assert.Equal(t, base, Root(base))
	assert.Equal(t, base, Root(fmt.Errorf("create /tmp/.status.json.123: %w", fmt.Errorf("open: %w", base))))
	joined := fmt.Errorf("monitor: %w and %w", base, fs.ErrNotExist)
	assert.Equal(t, joined, Root(joined), "a join is as deep as it goes")
	assert.Nil(t, Root(nil))
}
