// Stand-alone probe of kvm_pvm's SYSCALL handling (see README.md). Runs
// guests/syscall.asm (multiboot a.out kludge: loaded whole at 0x100000, entered
// in 32-bit protected mode) on a bare KVM vCPU: COM1 output, port 0xf4 exit.
// Env: HWBP=1 sets a KVM_GUESTDBG_USE_HW_BP execute breakpoint at the guest's
// LSTAR (re-read after every exit); FIX=1 then completes the SYSCALL at that
// breakpoint (CS/SS from STAR, CPL 0) -- it never fires on kvm_pvm;
// FILTER=1 routes the guest's LSTAR writes to userspace. Scratch quality on purpose.
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <unistd.h>
#include <stdint.h>
static int vc;
static uint64_t getmsr(uint32_t idx) {
  struct { struct kvm_msrs h; struct kvm_msr_entry e; } m; memset(&m, 0, sizeof m);
  m.h.nmsrs = 1; m.e.index = idx; if (ioctl(vc, KVM_GET_MSRS, &m) != 1) return ~0ull; return m.e.data;
}
static void seg(struct kvm_segment* s, uint16_t sel, int code, int l, int db, int dpl) {
  memset(s, 0, sizeof *s); s->selector = sel; s->limit = 0xffffffff; s->g = 1; s->present = 1; s->s = 1;
  s->type = code ? 0xb : 0x3; s->l = l; s->db = db; s->dpl = dpl;
}
int main(int argc, char** argv) {
  const char* path = argc > 1 ? argv[1] : "syscall.bin";
  int kvm = open("/dev/kvm", O_RDWR);
  if (kvm < 0) { perror("/dev/kvm"); return 77; }
  printf("cap X86_USER_SPACE_MSR=%d X86_MSR_FILTER=%d SET_GUEST_DEBUG=%d GUEST_DEBUG_HW_BPS=%d\n",
         ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_X86_USER_SPACE_MSR), ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_X86_MSR_FILTER),
         ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_SET_GUEST_DEBUG), ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_GUEST_DEBUG_HW_BPS));
  { struct kvm_msr_list* l = calloc(1, sizeof *l + 4096 * 4); l->nmsrs = 4096;
    if (ioctl(kvm, KVM_GET_MSR_INDEX_LIST, l) == 0) { printf("msr index list: %u, PVM range:", l->nmsrs);
      for (unsigned i = 0; i < l->nmsrs; i++) if ((l->indices[i] & 0xffffff00) == 0x4b564d00) printf(" %#x", l->indices[i]); printf("\n"); }
    l->nmsrs = 4096; if (ioctl(kvm, KVM_GET_MSR_FEATURE_INDEX_LIST, l) == 0) printf("feature msrs: %u\n", l->nmsrs); }
  int vm = ioctl(kvm, KVM_CREATE_VM, 0);
  size_t memsz = 64 << 20;
  uint8_t* mem = mmap(0, memsz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  FILE* f = fopen(path, "rb"); if (!f) { perror(path); return 1; }
  (void)fread(mem + 0x100000, 1, 1 << 20, f); fclose(f);
  uint32_t* mb = (uint32_t*)(mem + 0x100000); uint32_t entry = mb[7];
  struct kvm_userspace_memory_region r = {0, 0, 0, memsz, (unsigned long)mem};
  ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r);
  ioctl(vm, KVM_CREATE_IRQCHIP, 0);
  if (getenv("FILTER")) {  // deny-list LSTAR writes to userspace
    int en = KVM_MSR_EXIT_REASON_FILTER; struct kvm_enable_cap c = {.cap = KVM_CAP_X86_USER_SPACE_MSR, .args = {en}};
    printf("enable USER_SPACE_MSR: %d (%s)\n", ioctl(vm, KVM_ENABLE_CAP, &c), strerror(errno));
    static uint8_t bm[1] = {0}; struct kvm_msr_filter flt; memset(&flt, 0, sizeof flt);
    flt.flags = KVM_MSR_FILTER_DEFAULT_ALLOW; flt.ranges[0].flags = KVM_MSR_FILTER_WRITE; flt.ranges[0].nmsrs = 1;
    flt.ranges[0].base = 0xc0000082; flt.ranges[0].bitmap = bm;
    printf("SET_MSR_FILTER: %d (%s)\n", ioctl(vm, KVM_X86_SET_MSR_FILTER, &flt), strerror(errno));
  }
  vc = ioctl(vm, KVM_CREATE_VCPU, 0);
  struct kvm_run* run = mmap(0, ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0), PROT_READ | PROT_WRITE, MAP_SHARED, vc, 0);
  { struct kvm_cpuid2* c = calloc(1, sizeof *c + 256 * sizeof(struct kvm_cpuid_entry2)); c->nent = 256;
    ioctl(kvm, KVM_GET_SUPPORTED_CPUID, c); ioctl(vc, KVM_SET_CPUID2, c); }
  struct kvm_sregs s; ioctl(vc, KVM_GET_SREGS, &s);
  seg(&s.cs, 0x08, 1, 0, 1, 0); seg(&s.ds, 0x10, 0, 0, 1, 0); s.es = s.fs = s.gs = s.ss = s.ds;
  s.cr0 = 0x11; ioctl(vc, KVM_SET_SREGS, &s);
  struct kvm_regs g; memset(&g, 0, sizeof g); g.rip = entry; g.rflags = 2; g.rax = 0x2badb002; ioctl(vc, KVM_SET_REGS, &g);
  int hwbp = getenv("HWBP") != 0, fix = getenv("FIX") != 0; uint64_t bp = 0; int debugs = 0;
  for (int iter = 0; iter < 10000000; iter++) {
    if (hwbp) {
      uint64_t lstar = getmsr(0xc0000082);
      if (lstar != bp && lstar) {
        struct kvm_guest_debug d; memset(&d, 0, sizeof d);
        d.control = KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_USE_HW_BP; d.arch.debugreg[0] = lstar; d.arch.debugreg[7] = 0x1 | 0x400;
        int rc = ioctl(vc, KVM_SET_GUEST_DEBUG, &d);
        printf("[probe] hw bp at %#llx: %d\n", (unsigned long long)lstar, rc); bp = lstar;
      }
    }
    if (ioctl(vc, KVM_RUN, 0) < 0) { if (errno == EINTR) continue; perror("KVM_RUN"); return 1; }
    switch (run->exit_reason) {
      case KVM_EXIT_IO: {
        uint8_t* d = (uint8_t*)run + run->io.data_offset;
        if (run->io.direction == KVM_EXIT_IO_OUT && run->io.port == 0x3f8) fwrite(d, 1, run->io.size, stdout);
        else if (run->io.direction == KVM_EXIT_IO_IN && run->io.port == 0x3fd) d[0] = 0x60;
        else if (run->io.direction == KVM_EXIT_IO_IN) d[0] = 0;
        else if (run->io.port == 0xf4) { printf("[probe] exit %#x, debug exits %d\n", d[0], debugs); return 0; }
        break;
      }
      case KVM_EXIT_DEBUG: {
        struct kvm_sregs ss; ioctl(vc, KVM_GET_SREGS, &ss); ioctl(vc, KVM_GET_REGS, &g); debugs++;
        printf("[probe] debug exit: rip %#llx cs %#x ss %#x dr6 %#llx dr7 %#llx rflags %#llx rcx %#llx r11 %#llx rsp %#llx\n",
               g.rip, ss.cs.selector, ss.ss.selector, run->debug.arch.dr6, run->debug.arch.dr7, g.rflags, g.rcx, g.r11, g.rsp);
        if (fix && (ss.cs.selector & 3) == 3 && g.rip == bp) {
          uint64_t star = getmsr(0xc0000081); uint16_t k = (star >> 32) & 0xfffc;
          seg(&ss.cs, k, 1, 1, 0, 0); ss.cs.limit = 0xffffffff; seg(&ss.ss, k + 8, 0, 0, 1, 0); ss.ss.limit = 0xffffffff;
          ioctl(vc, KVM_SET_SREGS, &ss);
          printf("[probe] completed SYSCALL: cs %#x ss %#x\n", k, k + 8);
        } else { g.rflags |= 0x10000; ioctl(vc, KVM_SET_REGS, &g); }  // RF: step over the breakpoint
        break;
      }
      case KVM_EXIT_X86_WRMSR:
        printf("[probe] wrmsr %#x = %#llx\n", run->msr.index, (unsigned long long)run->msr.data); run->msr.error = 0; break;
      case KVM_EXIT_HLT: printf("[probe] hlt\n"); return 0;
      case KVM_EXIT_INTERNAL_ERROR: {
        ioctl(vc, KVM_GET_REGS, &g); printf("[probe] internal error %u at rip %#llx\n", run->internal.suberror, g.rip); return 1; }
      default: printf("[probe] exit reason %u\n", run->exit_reason); return 1;
    }
  }
  return 0;
}
