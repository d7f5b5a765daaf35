// Package jitfsdata embeds the repository's sample scene (testdata/scene),
// the show that `jitfs demo` serves from its in-process GCS emulator.
package jitfsdata
