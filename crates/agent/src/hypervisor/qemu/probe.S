# The KVM probe's boot sector (see probe.rs). Real mode with BIOS timer
# interrupts, then 32-bit protected mode, then 64-bit long mode with paging
# (the first 2 MiB identity-mapped); prints R, T, P, L and the marker on
# COM1, then leaves QEMU through isa-debug-exit (port 0xf4, value 0x10:
# exit status 33).
#
# Rebuild (GNU binutils):
#   as --64 -o probe.o probe.S
#   ld -m elf_x86_64 -Ttext 0x7c00 -e _start -o probe.elf probe.o
#   objcopy -O binary -j .text probe.elf probe.bin
.intel_syntax noprefix
.code16
.globl _start
_start:
    cli
    cld
    xor ax, ax
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov sp, 0x7c00
    mov dx, 0x3f8
    mov al, 'R'
    out dx, al
    # Timer interrupts: the BIOS counts PIT ticks (18.2 Hz) at 0x46c;
    # sleep (hlt) until it has advanced 4 times.
    sti
    mov bx, [0x46c]
    add bx, 4
7:  hlt
    mov ax, [0x46c]
    cmp ax, bx
    jne 7b
    cli
    mov al, 'T'
    out dx, al
    # Page tables at 0x1000 (PML4), 0x2000 (PDPT), 0x3000 (PD): zero them.
    mov di, 0x1000
    mov cx, 0x1800
    xor ax, ax
    rep stosw
    mov dword ptr [0x1000], 0x2003
    mov dword ptr [0x2000], 0x3003
    mov dword ptr [0x3000], 0x0083
    lgdt [gdtr]
    mov eax, cr0
    or eax, 1
    mov cr0, eax
    ljmp 0x08, offset pm32
.code32
pm32:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov dx, 0x3f8
    mov al, 'P'
    out dx, al
    mov eax, cr4
    or eax, 0x20
    mov cr4, eax
    mov eax, 0x1000
    mov cr3, eax
    mov ecx, 0xC0000080
    rdmsr
    or eax, 0x100
    wrmsr
    mov eax, cr0
    or eax, 0x80000000
    mov cr0, eax
    ljmp 0x18, offset lm64
.code64
lm64:
    mov dx, 0x3f8
    mov al, 'L'
    out dx, al
    lea rsi, [rip + msg]
1:  lodsb
    test al, al
    jz 2f
    out dx, al
    jmp 1b
2:  mov al, 0x10
    out 0xf4, al
3:  hlt
    jmp 3b
.p2align 3
gdt:
    .quad 0
    .quad 0x00CF9A000000FFFF
    .quad 0x00CF92000000FFFF
    .quad 0x00AF9A000000FFFF
gdtr:
    .word gdtr - gdt - 1
    .long gdt
msg:
    .asciz " OXISTACK-PROBE-OK\r\n"
.org 510
    .word 0xaa55
