import { useEffect, useRef, useState } from 'react';
import type { MenuItem } from './actions';

export function ContextMenu({
  x,
  y,
  items,
  label,
  onPick,
  onClose,
}: {
  x: number;
  y: number;
  items: MenuItem[];
  label: string;
  onPick: (item: MenuItem) => void;
  onClose: () => void;
}) {
  const ref = useRef<HTMLUListElement>(null);
  const [focus, setFocus] = useState(() => items.findIndex((i) => i.enabled));
  useEffect(() => {
    const el = ref.current?.querySelectorAll<HTMLElement>('[role=menuitem]')[focus];
    el?.focus();
  }, [focus]);
  useEffect(() => {
    const down = (e: MouseEvent) => {
      if (!ref.current?.contains(e.target as Node)) onClose();
    };
    window.addEventListener('mousedown', down);
    return () => window.removeEventListener('mousedown', down);
  }, [onClose]);
  const move = (d: number) => {
    let i = focus;
    for (let n = 0; n < items.length; n++) {
      i = (i + d + items.length) % items.length;
      if (items[i]!.enabled) return setFocus(i);
    }
  };
  return (
    <ul
      ref={ref}
      className="menu"
      role="menu"
      aria-label={label}
      style={{ left: Math.min(x, window.innerWidth - 200), top: Math.min(y, window.innerHeight - 300) }}
      onKeyDown={(e) => {
        if (e.key === 'ArrowDown') move(1);
        else if (e.key === 'ArrowUp') move(-1);
        else if (e.key === 'Home') (setFocus(-1), move(1));
        else if (e.key === 'Escape' || e.key === 'Tab') onClose();
        else return;
        e.preventDefault();
        e.stopPropagation();
      }}
    >
      {items.map((it, i) => (
        <li
          key={it.cmd}
          role="menuitem"
          tabIndex={i === focus ? 0 : -1}
          aria-disabled={!it.enabled}
          className={it.enabled ? '' : 'disabled'}
          onClick={() => it.enabled && onPick(it)}
          onKeyDown={(e) => {
            if ((e.key === 'Enter' || e.key === ' ') && it.enabled) {
              e.preventDefault();
              onPick(it);
            }
          }}
        >
          {it.label}
        </li>
      ))}
    </ul>
  );
}
