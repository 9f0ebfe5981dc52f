# Writes the compiled XDP object (IN) into a C array (OUT), so that
# garda-sensor carries its BPF program inside the binary: nothing to install
# next to it, no bpftool at build time. Run with cmake -P.
file(READ "${IN}" hex HEX)
string(LENGTH "${hex}" chars)
math(EXPR size "${chars} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," body "${hex}")
file(WRITE "${OUT}"
  "/* Generated from garda_xdp.bpf.o by embed.cmake: do not edit. */\n"
  "#include <stddef.h>\n"
  "__attribute__((aligned(8))) const unsigned char kGardaXdpObject[] = {${body}};\n"
  "const size_t kGardaXdpObjectSize = ${size};\n")
