# Seed 001, "加锁控制": three processes take turns under one Lock.
# As the seed writes it; the import is the one change (and the sleep is
# 0.2 s instead of 2 s, to keep CI quick).
from shmring import Process, Lock
import os, time


def work(lock):
    lock.acquire()  # 加锁
    print('%s is running' % os.getpid(), flush=True)
    time.sleep(0.2)
    print('%s is done' % os.getpid(), flush=True)
    lock.release()  # 释放锁


if __name__ == '__main__':
    lock = Lock()
    for i in range(3):
        p = Process(target=work, args=(lock,))
        p.start()
