# Seed 003, "管道实现消费者生成者模型": one producer, three consumers reading
# one end of a Pipe in turns under a Lock, a None each to stop. The import
# is the one change; the seed's `range()` (a TypeError) is `range(10)`.
#
# A shmring pipe end is used by one process at a time: the first consumer
# to receive holds the end, and the others' `recv` raises an OSError that
# says which process holds it (their tracebacks are printed). They die
# holding the Lock, which shmring hands to the next acquirer, so the first
# consumer still eats every item. For several readers, use a Queue.
from shmring import Lock, Pipe, Process


def producer(con, pro, name, food):
    con.close()
    for i in range(10):
        f = '%s生产%s%s' % (name, food, i)
        print(f, flush=True)
        pro.send(f)
    pro.send(None)
    pro.send(None)
    pro.send(None)
    pro.close()


def consumer(con, pro, name, lock):
    pro.close()
    while True:
        lock.acquire()
        food = con.recv()
        lock.release()
        if food is None:
            con.close()
            break
        print('%s吃了%s' % (name, food), flush=True)


if __name__ == '__main__':
    con, pro = Pipe()
    lock = Lock()
    p = Process(target=producer, args=(con, pro, 'egon', '泔水'))
    c1 = Process(target=consumer, args=(con, pro, 'alex', lock))
    c2 = Process(target=consumer, args=(con, pro, 'bossjin', lock))
    c3 = Process(target=consumer, args=(con, pro, 'wusir', lock))
    c1.start()
    c2.start()
    c3.start()
    p.start()
    con.close()
    pro.close()
