package oom

//go:generate go tool bpf2go -cc clang-14 -target bpfel -type oom_event oom oom.bpf.c -- -I../include -nostdinc -mcpu=v3 -Wall -Werror
