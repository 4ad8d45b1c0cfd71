# Seed 001, "生产消费者模型": three producers, two consumers, one None per
# consumer after the producers were joined. The import is the one change
# (sleeps a tenth of the seed's).
from shmring import Process, Lock, Queue
import json, time


def producer(q):
    for i in range(3):
        res = '包子%s' % i
        time.sleep(0.05)
        print('生产了%s' % res, flush=True)
        q.put(res)


def consumer(q):
    while True:
        res = q.get()
        if not res:
            print(res, flush=True)
            break
        time.sleep(0.1)
        print('消费者吃了%s' % res, flush=True)


if __name__ == '__main__':
    q = Queue()
    # 生产者们
    p1 = Process(target=producer, args=(q,))
    p2 = Process(target=producer, args=(q,))
    p3 = Process(target=producer, args=(q,))
    # 消费者们
    c1 = Process(target=consumer, args=(q,))
    c2 = Process(target=consumer, args=(q,))

    p1.start()
    p2.start()
    p3.start()
    c1.start()
    c2.start()

    p1.join()
    p2.join()
    p3.join()

    q.put(None)  # 必须要在生产者全部生产完后再发送结束信号,且有多少个消费者就发多少个结束信号
    q.put(None)
    c1.join()
    c2.join()

    print('主')
