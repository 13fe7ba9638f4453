/*
 * Vireo's DSDT for the i440FX/PIIX3 PC (compiled by iasl at build time; the
 * AML is linked into vireo_core as vireo_dsdt_aml, see acpi.cc).
 *
 * Every number below is one of the board's named constants; the constant and
 * where it comes from is named next to it. acpi_test checks the ISA resources
 * here against machine/layout.h and the device headers byte for byte.
 *
 * Processor objects are not here: acpi.cc builds them in an SSDT, one per
 * vCPU, since their number is a machine setting.
 */
DefinitionBlock ("", "DSDT", 1, "VIREO ", "VIREOPC ", 1)
{
    Scope (\_SB)
    {
        Device (PCI0)
        {
            Name (_HID, EisaId ("PNP0A03"))   /* PCI host bridge */
            Name (_UID, Zero)
            Name (_CRS, ResourceTemplate ()
            {
                /* Bus 0 only: the board has no PCI-to-PCI bridges. */
                WordBusNumber (ResourceProducer, MinFixed, MaxFixed, PosDecode,
                    0x0000, 0x0000, 0x00FF, 0x0000, 0x0100)
                /* pc_board.cc kPciConfigPort/kPciConfigLen: mechanism #1 0xcf8-0xcff */
                IO (Decode16, 0x0CF8, 0x0CF8, 0x01, 0x08)
                /* Port I/O forwarded to PCI/ISA: everything but the config ports */
                WordIO (ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange,
                    0x0000, 0x0000, 0x0CF7, 0x0000, 0x0CF8)
                WordIO (ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange,
                    0x0000, 0x0D00, 0xFFFF, 0x0000, 0xF300)
                /* layout.h kVgaWindow/kVgaWindowSize: legacy VGA memory */
                DWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, Cacheable, ReadWrite,
                    0x00000000, 0x000A0000, 0x000BFFFF, 0x00000000, 0x00020000)
                /* The 32-bit PCI window, machine/pci_windows.h: up to
                   kIoApicBase-1 (SeaBIOS places BARs top-down below the
                   IOAPIC); acpi.cc writes its minimum and length for the
                   machine's RAM (0x80000000 or 0xc0000000, where SeaBIOS's
                   i440FX setup starts allocating). */
                DWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, NonCacheable, ReadWrite,
                    0x00000000, 0xC0000000, 0xFEBFFFFF, 0x00000000, 0x3EC00000)
                /* The 64-bit PCI window, machine/pci_windows.h: from the end
                   of RAM above 4 GiB (rounded up to 1 GiB) to the top of the
                   guest's physical address space (at most 2^46). acpi.cc
                   writes its minimum, maximum and length; the numbers here
                   are a machine without RAM above 4 GiB and 36-bit
                   addresses. Cacheable, as QEMU's pc declares it. */
                QWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, Cacheable, ReadWrite,
                    0x0000000000000000, 0x0000000100000000, 0x0000000FFFFFFFFF, 0x0000000000000000,
                    0x0000000F00000000)
            })

            /*
             * PCI interrupt routing: slot S pin P (0 = INTA#) goes to PIRQ
             * (S - 1 + P) & 3, the i440FX/PIIX3 swizzle Piix3::pirq_of
             * implements, i.e. (4*S + P + S + 3) & 3 for entry index 4*S + P.
             * A static package, not a Method building it in a While loop:
             * ACPICA aborts an AML loop after 30 s (AE_AML_LOOP_TIMEOUT), and
             * on a host that emulates guest ring 0 the loop took longer, so
             * Linux found no PCI interrupt routing (seen on kvm_pvm, 2 vCPUs).
             */
            Name (_PRT, Package (0x80)
            {
                Package (0x04) { 0x0000FFFF, 0x00, LNKD, Zero },
                Package (0x04) { 0x0000FFFF, 0x01, LNKA, Zero },
                Package (0x04) { 0x0000FFFF, 0x02, LNKB, Zero },
                Package (0x04) { 0x0000FFFF, 0x03, LNKC, Zero },
                Package (0x04) { 0x0001FFFF, 0x00, LNKA, Zero },
                Package (0x04) { 0x0001FFFF, 0x01, LNKB, Zero },
                Package (0x04) { 0x0001FFFF, 0x02, LNKC, Zero },
                Package (0x04) { 0x0001FFFF, 0x03, LNKD, Zero },
                Package (0x04) { 0x0002FFFF, 0x00, LNKB, Zero },
                Package (0x04) { 0x0002FFFF, 0x01, LNKC, Zero },
                Package (0x04) { 0x0002FFFF, 0x02, LNKD, Zero },
                Package (0x04) { 0x0002FFFF, 0x03, LNKA, Zero },
                Package (0x04) { 0x0003FFFF, 0x00, LNKC, Zero },
                Package (0x04) { 0x0003FFFF, 0x01, LNKD, Zero },
                Package (0x04) { 0x0003FFFF, 0x02, LNKA, Zero },
                Package (0x04) { 0x0003FFFF, 0x03, LNKB, Zero },
                Package (0x04) { 0x0004FFFF, 0x00, LNKD, Zero },
                Package (0x04) { 0x0004FFFF, 0x01, LNKA, Zero },
                Package (0x04) { 0x0004FFFF, 0x02, LNKB, Zero },
                Package (0x04) { 0x0004FFFF, 0x03, LNKC, Zero },
                Package (0x04) { 0x0005FFFF, 0x00, LNKA, Zero },
                Package (0x04) { 0x0005FFFF, 0x01, LNKB, Zero },
                Package (0x04) { 0x0005FFFF, 0x02, LNKC, Zero },
                Package (0x04) { 0x0005FFFF, 0x03, LNKD, Zero },
                Package (0x04) { 0x0006FFFF, 0x00, LNKB, Zero },
                Package (0x04) { 0x0006FFFF, 0x01, LNKC, Zero },
                Package (0x04) { 0x0006FFFF, 0x02, LNKD, Zero },
                Package (0x04) { 0x0006FFFF, 0x03, LNKA, Zero },
                Package (0x04) { 0x0007FFFF, 0x00, LNKC, Zero },
                Package (0x04) { 0x0007FFFF, 0x01, LNKD, Zero },
                Package (0x04) { 0x0007FFFF, 0x02, LNKA, Zero },
                Package (0x04) { 0x0007FFFF, 0x03, LNKB, Zero },
                Package (0x04) { 0x0008FFFF, 0x00, LNKD, Zero },
                Package (0x04) { 0x0008FFFF, 0x01, LNKA, Zero },
                Package (0x04) { 0x0008FFFF, 0x02, LNKB, Zero },
                Package (0x04) { 0x0008FFFF, 0x03, LNKC, Zero },
                Package (0x04) { 0x0009FFFF, 0x00, LNKA, Zero },
                Package (0x04) { 0x0009FFFF, 0x01, LNKB, Zero },
                Package (0x04) { 0x0009FFFF, 0x02, LNKC, Zero },
                Package (0x04) { 0x0009FFFF, 0x03, LNKD, Zero },
                Package (0x04) { 0x000AFFFF, 0x00, LNKB, Zero },
                Package (0x04) { 0x000AFFFF, 0x01, LNKC, Zero },
                Package (0x04) { 0x000AFFFF, 0x02, LNKD, Zero },
                Package (0x04) { 0x000AFFFF, 0x03, LNKA, Zero },
                Package (0x04) { 0x000BFFFF, 0x00, LNKC, Zero },
                Package (0x04) { 0x000BFFFF, 0x01, LNKD, Zero },
                Package (0x04) { 0x000BFFFF, 0x02, LNKA, Zero },
                Package (0x04) { 0x000BFFFF, 0x03, LNKB, Zero },
                Package (0x04) { 0x000CFFFF, 0x00, LNKD, Zero },
                Package (0x04) { 0x000CFFFF, 0x01, LNKA, Zero },
                Package (0x04) { 0x000CFFFF, 0x02, LNKB, Zero },
                Package (0x04) { 0x000CFFFF, 0x03, LNKC, Zero },
                Package (0x04) { 0x000DFFFF, 0x00, LNKA, Zero },
                Package (0x04) { 0x000DFFFF, 0x01, LNKB, Zero },
                Package (0x04) { 0x000DFFFF, 0x02, LNKC, Zero },
                Package (0x04) { 0x000DFFFF, 0x03, LNKD, Zero },
                Package (0x04) { 0x000EFFFF, 0x00, LNKB, Zero },
                Package (0x04) { 0x000EFFFF, 0x01, LNKC, Zero },
                Package (0x04) { 0x000EFFFF, 0x02, LNKD, Zero },
                Package (0x04) { 0x000EFFFF, 0x03, LNKA, Zero },
                Package (0x04) { 0x000FFFFF, 0x00, LNKC, Zero },
                Package (0x04) { 0x000FFFFF, 0x01, LNKD, Zero },
                Package (0x04) { 0x000FFFFF, 0x02, LNKA, Zero },
                Package (0x04) { 0x000FFFFF, 0x03, LNKB, Zero },
                Package (0x04) { 0x0010FFFF, 0x00, LNKD, Zero },
                Package (0x04) { 0x0010FFFF, 0x01, LNKA, Zero },
                Package (0x04) { 0x0010FFFF, 0x02, LNKB, Zero },
                Package (0x04) { 0x0010FFFF, 0x03, LNKC, Zero },
                Package (0x04) { 0x0011FFFF, 0x00, LNKA, Zero },
                Package (0x04) { 0x0011FFFF, 0x01, LNKB, Zero },
                Package (0x04) { 0x0011FFFF, 0x02, LNKC, Zero },
                Package (0x04) { 0x0011FFFF, 0x03, LNKD, Zero },
                Package (0x04) { 0x0012FFFF, 0x00, LNKB, Zero },
                Package (0x04) { 0x0012FFFF, 0x01, LNKC, Zero },
                Package (0x04) { 0x0012FFFF, 0x02, LNKD, Zero },
                Package (0x04) { 0x0012FFFF, 0x03, LNKA, Zero },
                Package (0x04) { 0x0013FFFF, 0x00, LNKC, Zero },
                Package (0x04) { 0x0013FFFF, 0x01, LNKD, Zero },
                Package (0x04) { 0x0013FFFF, 0x02, LNKA, Zero },
                Package (0x04) { 0x0013FFFF, 0x03, LNKB, Zero },
                Package (0x04) { 0x0014FFFF, 0x00, LNKD, Zero },
                Package (0x04) { 0x0014FFFF, 0x01, LNKA, Zero },
                Package (0x04) { 0x0014FFFF, 0x02, LNKB, Zero },
                Package (0x04) { 0x0014FFFF, 0x03, LNKC, Zero },
                Package (0x04) { 0x0015FFFF, 0x00, LNKA, Zero },
                Package (0x04) { 0x0015FFFF, 0x01, LNKB, Zero },
                Package (0x04) { 0x0015FFFF, 0x02, LNKC, Zero },
                Package (0x04) { 0x0015FFFF, 0x03, LNKD, Zero },
                Package (0x04) { 0x0016FFFF, 0x00, LNKB, Zero },
                Package (0x04) { 0x0016FFFF, 0x01, LNKC, Zero },
                Package (0x04) { 0x0016FFFF, 0x02, LNKD, Zero },
                Package (0x04) { 0x0016FFFF, 0x03, LNKA, Zero },
                Package (0x04) { 0x0017FFFF, 0x00, LNKC, Zero },
                Package (0x04) { 0x0017FFFF, 0x01, LNKD, Zero },
                Package (0x04) { 0x0017FFFF, 0x02, LNKA, Zero },
                Package (0x04) { 0x0017FFFF, 0x03, LNKB, Zero },
                Package (0x04) { 0x0018FFFF, 0x00, LNKD, Zero },
                Package (0x04) { 0x0018FFFF, 0x01, LNKA, Zero },
                Package (0x04) { 0x0018FFFF, 0x02, LNKB, Zero },
                Package (0x04) { 0x0018FFFF, 0x03, LNKC, Zero },
                Package (0x04) { 0x0019FFFF, 0x00, LNKA, Zero },
                Package (0x04) { 0x0019FFFF, 0x01, LNKB, Zero },
                Package (0x04) { 0x0019FFFF, 0x02, LNKC, Zero },
                Package (0x04) { 0x0019FFFF, 0x03, LNKD, Zero },
                Package (0x04) { 0x001AFFFF, 0x00, LNKB, Zero },
                Package (0x04) { 0x001AFFFF, 0x01, LNKC, Zero },
                Package (0x04) { 0x001AFFFF, 0x02, LNKD, Zero },
                Package (0x04) { 0x001AFFFF, 0x03, LNKA, Zero },
                Package (0x04) { 0x001BFFFF, 0x00, LNKC, Zero },
                Package (0x04) { 0x001BFFFF, 0x01, LNKD, Zero },
                Package (0x04) { 0x001BFFFF, 0x02, LNKA, Zero },
                Package (0x04) { 0x001BFFFF, 0x03, LNKB, Zero },
                Package (0x04) { 0x001CFFFF, 0x00, LNKD, Zero },
                Package (0x04) { 0x001CFFFF, 0x01, LNKA, Zero },
                Package (0x04) { 0x001CFFFF, 0x02, LNKB, Zero },
                Package (0x04) { 0x001CFFFF, 0x03, LNKC, Zero },
                Package (0x04) { 0x001DFFFF, 0x00, LNKA, Zero },
                Package (0x04) { 0x001DFFFF, 0x01, LNKB, Zero },
                Package (0x04) { 0x001DFFFF, 0x02, LNKC, Zero },
                Package (0x04) { 0x001DFFFF, 0x03, LNKD, Zero },
                Package (0x04) { 0x001EFFFF, 0x00, LNKB, Zero },
                Package (0x04) { 0x001EFFFF, 0x01, LNKC, Zero },
                Package (0x04) { 0x001EFFFF, 0x02, LNKD, Zero },
                Package (0x04) { 0x001EFFFF, 0x03, LNKA, Zero },
                Package (0x04) { 0x001FFFFF, 0x00, LNKC, Zero },
                Package (0x04) { 0x001FFFFF, 0x01, LNKD, Zero },
                Package (0x04) { 0x001FFFFF, 0x02, LNKA, Zero },
                Package (0x04) { 0x001FFFFF, 0x03, LNKB, Zero }
            })

            /* 00:01.0 PIIX3 PCI-to-ISA bridge (Piix3::kSlot/kFn) */
            Device (ISA)
            {
                Name (_ADR, 0x00010000)
                /* Piix3::kPirqBase: PIRQRC[A-D], bit 7 disable, bits 3:0 ISA IRQ */
                OperationRegion (P40C, PCI_Config, 0x60, 0x04)

                /* MC146818 RTC: pc_board.cc kRtcPort/kRtcLen, kIrqRtc */
                Device (RTC)
                {
                    Name (_HID, EisaId ("PNP0B00"))
                    Name (_CRS, ResourceTemplate ()
                    {
                        IO (Decode16, 0x0070, 0x0070, 0x01, 0x02)
                        IRQNoFlags () {8}
                    })
                }

                /* i8042 keyboard: pc_board.cc kKbdDataPort, kKbdCmdPort, kIrqKbd.
                   SeaBIOS skips its PS/2 setup unless the DSDT has PNP0303. */
                Device (KBD)
                {
                    Name (_HID, EisaId ("PNP0303"))
                    Name (_STA, 0x0F)
                    Name (_CRS, ResourceTemplate ()
                    {
                        IO (Decode16, 0x0060, 0x0060, 0x01, 0x01)
                        IO (Decode16, 0x0064, 0x0064, 0x01, 0x01)
                        IRQNoFlags () {1}
                    })
                }

                /* i8042 aux port (PS/2 mouse): pc_board.cc kIrqMouse */
                Device (MOU)
                {
                    Name (_HID, EisaId ("PNP0F13"))
                    Name (_STA, 0x0F)
                    Name (_CRS, ResourceTemplate ()
                    {
                        IRQNoFlags () {12}
                    })
                }

                /* 16550A UARTs: layout.h kCom1Port/kCom1Irq, kCom2Port/kCom2Irq */
                Device (COM1)
                {
                    Name (_HID, EisaId ("PNP0501"))
                    Name (_UID, One)
                    Name (_STA, 0x0F)
                    Name (_CRS, ResourceTemplate ()
                    {
                        IO (Decode16, 0x03F8, 0x03F8, 0x01, 0x08)
                        IRQNoFlags () {4}
                    })
                }
                Device (COM2)
                {
                    Name (_HID, EisaId ("PNP0501"))
                    Name (_UID, 0x02)
                    Name (_STA, 0x0F)
                    Name (_CRS, ResourceTemplate ()
                    {
                        IO (Decode16, 0x02F8, 0x02F8, 0x01, 0x08)
                        IRQNoFlags () {3}
                    })
                }
            }
        }

        /* The PIRQ route registers as fields (Piix3::kPirqBase + 0..3). */
        Field (PCI0.ISA.P40C, ByteAcc, NoLock, Preserve)
        {
            PRQ0,   8,
            PRQ1,   8,
            PRQ2,   8,
            PRQ3,   8
        }

        /* _STA of a link from its PIRQRC value: disabled (bit 7) or enabled. */
        Method (IQST, 1, NotSerialized)
        {
            If ((0x80 & Arg0))
            {
                Return (0x09)
            }
            Return (0x0B)
        }

        /* _CRS of a link: the ISA IRQ in PIRQRC bits 3:0, none when disabled. */
        Method (IQCR, 1, Serialized)
        {
            Local0 = ResourceTemplate ()
            {
                Interrupt (ResourceConsumer, Level, ActiveHigh, Shared, ,, )
                {
                    0x00000000,
                }
            }
            /* Offset 5: the first interrupt number of an Extended Interrupt descriptor */
            CreateDWordField (Local0, 0x05, PRRI)
            If ((Arg0 < 0x80))
            {
                PRRI = (Arg0 & 0x0F)
            }
            Return (Local0)
        }

        /* PCI interrupt links A-D (PIIX3 PIRQA#-D#). The IRQs offered are
           those SeaBIOS and QEMU's pc use for PCI: 5, 10, 11. */
        Device (LNKA)
        {
            Name (_HID, EisaId ("PNP0C0F"))
            Name (_UID, Zero)
            Name (_PRS, ResourceTemplate ()
            {
                Interrupt (ResourceConsumer, Level, ActiveHigh, Shared, ,, )
                {
                    0x00000005, 0x0000000A, 0x0000000B,
                }
            })
            Method (_STA, 0, NotSerialized) { Return (IQST (PRQ0)) }
            Method (_DIS, 0, NotSerialized) { PRQ0 |= 0x80 }
            Method (_CRS, 0, NotSerialized) { Return (IQCR (PRQ0)) }
            Method (_SRS, 1, NotSerialized)
            {
                CreateDWordField (Arg0, 0x05, PRRI)
                PRQ0 = PRRI
            }
        }
        Device (LNKB)
        {
            Name (_HID, EisaId ("PNP0C0F"))
            Name (_UID, One)
            Name (_PRS, ResourceTemplate ()
            {
                Interrupt (ResourceConsumer, Level, ActiveHigh, Shared, ,, )
                {
                    0x00000005, 0x0000000A, 0x0000000B,
                }
            })
            Method (_STA, 0, NotSerialized) { Return (IQST (PRQ1)) }
            Method (_DIS, 0, NotSerialized) { PRQ1 |= 0x80 }
            Method (_CRS, 0, NotSerialized) { Return (IQCR (PRQ1)) }
            Method (_SRS, 1, NotSerialized)
            {
                CreateDWordField (Arg0, 0x05, PRRI)
                PRQ1 = PRRI
            }
        }
        Device (LNKC)
        {
            Name (_HID, EisaId ("PNP0C0F"))
            Name (_UID, 0x02)
            Name (_PRS, ResourceTemplate ()
            {
                Interrupt (ResourceConsumer, Level, ActiveHigh, Shared, ,, )
                {
                    0x00000005, 0x0000000A, 0x0000000B,
                }
            })
            Method (_STA, 0, NotSerialized) { Return (IQST (PRQ2)) }
            Method (_DIS, 0, NotSerialized) { PRQ2 |= 0x80 }
            Method (_CRS, 0, NotSerialized) { Return (IQCR (PRQ2)) }
            Method (_SRS, 1, NotSerialized)
            {
                CreateDWordField (Arg0, 0x05, PRRI)
                PRQ2 = PRRI
            }
        }
        Device (LNKD)
        {
            Name (_HID, EisaId ("PNP0C0F"))
            Name (_UID, 0x03)
            Name (_PRS, ResourceTemplate ()
            {
                Interrupt (ResourceConsumer, Level, ActiveHigh, Shared, ,, )
                {
                    0x00000005, 0x0000000A, 0x0000000B,
                }
            })
            Method (_STA, 0, NotSerialized) { Return (IQST (PRQ3)) }
            Method (_DIS, 0, NotSerialized) { PRQ3 |= 0x80 }
            Method (_CRS, 0, NotSerialized) { Return (IQCR (PRQ3)) }
            Method (_SRS, 1, NotSerialized)
            {
                CreateDWordField (Arg0, 0x05, PRRI)
                PRQ3 = PRRI
            }
        }
    }

    /* Soft-off: Piix4Pm::kSlpTypS5 (0) in PM1a_CNT.SLP_TYP. S3/S4 are not
       offered: the board does not implement suspend. */
    Name (\_S5, Package (0x04) { Zero, Zero, Zero, Zero })

    /* General-purpose events: Piix4Pm's GPE0 block has no event wired yet. */
    Scope (\_GPE)
    {
        Name (_HID, "ACPI0006")
    }
}
