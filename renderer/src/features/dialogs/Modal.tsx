import { type ReactNode, useEffect, useRef } from 'react';

export function Modal({ title, onClose, children, footer, wide }: { title: string; onClose: () => void; children: ReactNode; footer: ReactNode; wide?: boolean }) {
  const ref = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const prev = document.activeElement as HTMLElement | null;
    ref.current?.querySelector<HTMLElement>('input:not([disabled]), select, button:not([disabled])')?.focus();
    return () => prev?.focus?.();
  }, []);
  return (
    <div className="backdrop">
      <div
        ref={ref}
        className={`modal ${wide ? 'wide' : ''}`}
        role="dialog"
        aria-modal="true"
        aria-label={title}
        onKeyDown={(e) => {
          if (e.key === 'Escape') {
            e.stopPropagation();
            onClose();
          }
        }}
      >
        <h2>{title}</h2>
        <div className="modal-body">{children}</div>
        <div className="modal-footer">{footer}</div>
      </div>
    </div>
  );
}

/** A labelled field with its error under it (aria-invalid + aria-describedby). */
export function Field({ id, label, error, children, hint }: { id: string; label: string; error?: string | undefined; hint?: string; children: ReactNode }) {
  return (
    <div className={`field ${error ? 'invalid' : ''}`}>
      <label htmlFor={id}>{label}</label>
      {children}
      {hint && !error && <div className="hint">{hint}</div>}
      {error && (
        <div className="field-error" id={`${id}-error`} role="alert">
          {error}
        </div>
      )}
    </div>
  );
}

/** The error of the last action, where the user is looking (nothing when there is none). */
export function ErrorBanner({ error }: { error?: string | null | undefined }) {
  return error ? (
    <p className="banner error" role="alert">
      {error}
    </p>
  ) : null;
}

/** A window's footer with only Close. */
export function CloseFooter({ onClose }: { onClose: () => void }) {
  return (
    <>
      <span className="grow" />
      <button onClick={onClose}>Close</button>
    </>
  );
}

/** A dialog's footer: anything on the left, then Cancel and the action (primary, or danger for what can't be undone). */
export function DialogButtons({
  onCancel,
  onAction,
  label,
  danger,
  disabled,
  left,
}: {
  onCancel: () => void;
  onAction: () => void;
  label: string;
  danger?: boolean;
  disabled?: boolean;
  left?: ReactNode;
}) {
  return (
    <>
      {left}
      <span className="grow" />
      <button onClick={onCancel}>Cancel</button>
      <button className={danger ? 'danger' : 'primary'} disabled={disabled} onClick={onAction}>
        {label}
      </button>
    </>
  );
}
