// Package vfs is the small file-system interface synod's storage is written
// against, with two implementations: the operating system's (Default), and
// an in-memory one (NewMem) for tests and the simulator, in which a crash
// keeps only what was synced and faults can be injected.
//
// Durability follows POSIX: data written to a file is durable once the file
// is synced; a newly created, renamed or removed name is durable once its
// directory is synced (SyncDir).
package vfs

import (
	"errors"
	"io"
	"io/fs"
)

// FS is a file system. Names use "/" as the separator on every platform.
type FS interface {
	// Create creates the named file for reading and writing, truncating it
	// if it exists.
	Create(name string) (File, error)
	// Open opens the named file read-only.
	Open(name string) (File, error)
	// OpenReadWrite opens an existing file for reading and writing,
	// without truncating it.
	OpenReadWrite(name string) (File, error)
	// Remove removes the named file or empty directory.
	Remove(name string) error
	// Rename atomically replaces newname with oldname.
	Rename(oldname, newname string) error
	// MkdirAll creates a directory and any missing parents.
	MkdirAll(dir string, perm fs.FileMode) error
	// List returns the names of the entries in dir, sorted.
	List(dir string) ([]string, error)
	// Stat describes the named file.
	Stat(name string) (fs.FileInfo, error)
	// SyncDir makes the directory's entries (creations, renames, removals)
	// durable.
	SyncDir(dir string) error
}

// File is an open file.
type File interface {
	io.Reader
	io.ReaderAt
	io.Writer
	io.WriterAt
	io.Closer
	// Sync makes everything written so far durable.
	Sync() error
	// Truncate changes the file's size; growing it fills with zeros (used
	// to preallocate).
	Truncate(size int64) error
	Stat() (fs.FileInfo, error)
}

// ErrNoSpace is returned (wrapped) when a write fails because the disk is
// full. Check with errors.Is.
var ErrNoSpace = errors.New("vfs: no space left on device")

// ErrInjected is returned (wrapped) by an in-memory file system when a
// fault injected on purpose fails an operation, such as an fsync.
var ErrInjected = errors.New("vfs: injected fault")
