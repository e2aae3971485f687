package runqlat

//go:generate go tool bpf2go -cc clang-14 -target bpfel -type cpu_state -type hist runqlat runqlat.bpf.c -- -I../include -nostdinc -mcpu=v3 -Wall -Werror
