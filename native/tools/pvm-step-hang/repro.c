// Reproduction of a kvm_pvm bug: see README.md. Scratch quality on purpose (one file,
// no error handling beyond perror); env: RESTEP=1 re-enables stepping once stuck,
// REPAIR=1 tries forcing a halted vCPU runnable (it then runs off into garbage).
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <time.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>
#include <errno.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
int stepmode; volatile int stuckfix; int vm; unsigned char*mem; volatile int done, want; pthread_t mainth; long raised;
static void h(int s){}
void* th(void*a){ usleep(100000); double t0=now(); unsigned short last=0xffff; double tl=0;
  while(!done){ unsigned short c=*(volatile unsigned short*)(mem+0x500);
    if(c!=last || now()-tl>0.005){ struct kvm_irq_level l={.irq=1,.level=1}; ioctl(vm,KVM_IRQ_LINE,&l); l.level=0; ioctl(vm,KVM_IRQ_LINE,&l); raised++; tl=now(); last=c;}
    want = stuckfix ? 1 : (stepmode==2 ? rand()%2 : stepmode); pthread_kill(mainth,SIGUSR1);
    usleep(1000+rand()%3000); { static unsigned short lastloops; static double tstuck; unsigned short lp=*(volatile unsigned short*)(mem+0x504); if(lp!=lastloops){lastloops=lp; tstuck=now();} else if(now()-tstuck>0.5){ printf("STUCK loops=%u\n",lp); fflush(stdout); tstuck=now()+100; if(getenv("RESTEP")) stuckfix=1;} } if(now()-t0>4){done=1; pthread_kill(mainth,SIGUSR1);} }
  return 0;}
int main(int argc,char**argv){
  signal(SIGUSR1,h); stepmode=argc>1?atoi(argv[1]):0;
  int kvm=open("/dev/kvm",O_RDWR); vm=ioctl(kvm,KVM_CREATE_VM,0);
  mem=mmap(0,0x10000,PROT_READ|PROT_WRITE,MAP_SHARED|MAP_ANONYMOUS,-1,0);
  FILE*f=fopen("guest.bin","rb"); fread(mem+0x1000,1,4096,f); fclose(f);
  struct kvm_userspace_memory_region r={0,0,0,0x10000,(unsigned long)mem}; ioctl(vm,KVM_SET_USER_MEMORY_REGION,&r);
  ioctl(vm,KVM_CREATE_IRQCHIP,0);
  int vc=ioctl(vm,KVM_CREATE_VCPU,0); int sz=ioctl(kvm,KVM_GET_VCPU_MMAP_SIZE,0);
  struct kvm_run*run=mmap(0,sz,PROT_READ|PROT_WRITE,MAP_SHARED,vc,0);
  struct kvm_sregs s; ioctl(vc,KVM_GET_SREGS,&s); s.cs.base=0;s.cs.selector=0; ioctl(vc,KVM_SET_SREGS,&s);
  struct kvm_regs g; memset(&g,0,sizeof g); g.rip=0x1000; g.rflags=2; ioctl(vc,KVM_SET_REGS,&g);
  mainth=pthread_self(); pthread_t t; pthread_create(&t,0,th,0);
  long dbg=0,intr=0,toggles=0,repairs=0; int stepping=0;
  while(!done){
    struct kvm_vcpu_events evs; ioctl(vc,KVM_GET_VCPU_EVENTS,&evs); struct kvm_mp_state mps; ioctl(vc,KVM_GET_MP_STATE,&mps); struct kvm_regs rq; ioctl(vc,KVM_GET_REGS,&rq); if(want!=stepping && (want || (evs.interrupt.shadow==0 && mps.mp_state!=KVM_MP_STATE_HALTED)) && (!getenv("ISRONLY") || (rq.rip>=0x1031 && rq.rip<0x1040))){ struct kvm_guest_debug d; memset(&d,0,sizeof d); d.control = getenv("OFFENABLE") ? KVM_GUESTDBG_ENABLE : 0; if(want) d.control=KVM_GUESTDBG_ENABLE|KVM_GUESTDBG_SINGLESTEP; if(ioctl(vc,KVM_SET_GUEST_DEBUG,&d)<0) perror("dbg"); if(getenv("RESYNC")){ struct kvm_regs rr; ioctl(vc,KVM_GET_REGS,&rr); ioctl(vc,KVM_SET_REGS,&rr);} stepping=want; toggles++; }
    if(getenv("REPAIR")){ struct kvm_mp_state m3; ioctl(vc,KVM_GET_MP_STATE,&m3); if(m3.mp_state==KVM_MP_STATE_HALTED){ struct kvm_vcpu_events e3; ioctl(vc,KVM_GET_VCPU_EVENTS,&e3); struct kvm_regs r3; ioctl(vc,KVM_GET_REGS,&r3); if(e3.interrupt.shadow || !(r3.rflags&0x200)){ repairs++; m3.mp_state=KVM_MP_STATE_RUNNABLE; ioctl(vc,KVM_SET_MP_STATE,&m3); e3.interrupt.shadow=0; e3.flags=KVM_VCPUEVENT_VALID_SHADOW; ioctl(vc,KVM_SET_VCPU_EVENTS,&e3);} } }
    int rc=ioctl(vc,KVM_RUN,0); if(rc<0){ if(errno!=EINTR) perror("run"); intr++; continue;}
    if(run->exit_reason==KVM_EXIT_DEBUG)dbg++; else {printf("exit %d\n",run->exit_reason); break;}}
  ioctl(vc,KVM_GET_REGS,&g); { struct kvm_mp_state m2; ioctl(vc,KVM_GET_MP_STATE,&m2); struct kvm_vcpu_events ev; ioctl(vc,KVM_GET_VCPU_EVENTS,&ev); printf("rip=%llx rflags=%llx mp=%u shadow=%u irq_inj=%u\n",g.rip,g.rflags,m2.mp_state,ev.interrupt.shadow,ev.interrupt.injected); }
  printf("repairs=%ld mode=%d toggles=%ld dbgexits=%ld raised=%ld taken=%u [0x502]=%u loops=%u [0x506]=%u\n",repairs,stepmode,toggles,dbg,raised,*(unsigned short*)(mem+0x500),*(unsigned short*)(mem+0x502),*(unsigned short*)(mem+0x504),*(unsigned short*)(mem+0x506));
}
